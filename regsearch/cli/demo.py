"""``regsearch demo``: the whole service on embedded defaults, one bundled search, then stop."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from regsearch.cli.launcher import Supervisor, free_port, plan
from regsearch.cli.tables import comparison_table, print_best
from regsearch.client import Client
from regsearch.config import Settings
from regsearch.domain.progress import document_progress, progress_detail
from regsearch.domain.states import FINAL_JOB_STATES, JobState
from regsearch.store.migrate import upgrade

READY_TIMEOUT_S = 90




def _wait_ready(client: Client, supervisor: Supervisor, console: Console) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with console.status("starting the API, the coordinator and the workers..."):
        while time.monotonic() < deadline:
            if supervisor.dead():
                return False
            if client.ready():
                return True
            time.sleep(0.3)
    return False


def run_demo(settings: Settings, spec: dict[str, Any], *, workers: int, console: Console,
             pass_fds: tuple[int, ...] = ()) -> int:
    """Start everything, run ``spec`` to the end with a progress bar, print the comparison; exit code.

    ``pass_fds``: the data directory lock, inherited by the components."""
    upgrade(settings.sqlalchemy_url)
    port = free_port()  # never collide with a `regsearch up` already running
    settings = settings.model_copy(update={"api_url": f"http://127.0.0.1:{port}"})
    log_dir = str(settings.data_dir / "logs")
    supervisor = Supervisor(settings, plan(settings, workers=workers, api_port=port, dashboard_port=None), log_dir,
                            pass_fds=pass_fds)
    started = time.monotonic()
    supervisor.start()
    try:
        with Client(settings) as client:
            if not _wait_ready(client, supervisor, console):
                console.print(f"the service did not start; see the logs in {log_dir}", style="red")
                return 1
            job = client.submit(spec)
            console.print(f"submitted job {job['id']} ({spec['name']}): {spec['budget']['n_trials']} trials, "
                          f"{workers} workers, data in {settings.data_dir}")
            job = _follow(client, job["id"], supervisor, console)
            if job is None:
                console.print(f"a component stopped unexpectedly; see the logs in {log_dir}", style="red")
                return 1
            console.print(comparison_table(client.report(job["id"]), console.width))
            print_best(console, client.best(job["id"], 3))
            console.print(f"job {job['status']} in {time.monotonic() - started:.1f}s (wall, incl. start-up); "
                          f"its data are in {_shown_path(settings.data_dir)}.", highlight=False, markup=False)
            for line in next_steps(job["id"], settings.data_dir):
                console.print(line, highlight=False, markup=False, soft_wrap=True)
            return 0 if job["status"] == JobState.COMPLETED else 1
    finally:
        supervisor.stop()


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (``.venv/bin/regsearch``)."""
    try:
        return str(Path(os.path.relpath(path)) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else path)
    except ValueError:  # another drive
        return str(path)


def cli_command() -> str:
    """How to run the CLI from here: ``regsearch`` when that name on PATH is this installation's
    script, else the script's path (``make demo`` runs from a venv that is not activated)."""
    script = Path(sys.executable).parent / "regsearch"  # not resolved: a venv's python is a link
    found = shutil.which("regsearch")
    if found is not None and script.exists() and Path(found).resolve() == script.resolve():
        return "regsearch"
    if script.exists():
        return _shown_path(script)
    return f"{_shown_path(Path(sys.executable))} -m regsearch"


def next_steps(job_id: str, data_dir: Path) -> list[str]:
    """The demo's last lines: how to run the CLI, then how to look at the job it ran."""
    command = cli_command()
    here = Path(data_dir).resolve().is_relative_to(Path.cwd().resolve())
    lines = []
    if command != "regsearch":
        activate = Path(sys.executable).parent / "activate"
        lines.append(f"The regsearch command is in the virtual environment: run it as {command}"
                     + (f" (or first `source {_shown_path(activate)}`, then plain `regsearch`)." if activate.exists()
                        else "."))
    where = " from this folder (its data directory is here)" if here else ""
    lines.append(f"See it with `{command} up`{where} and the dashboard at http://127.0.0.1:8501/?job={job_id}; "
                 f"`{command} report {job_id}` prints the evidence.")
    return lines


def _follow(client: Client, job_id: str, supervisor: Supervisor, console: Console) -> dict[str, Any] | None:
    with Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("trials", total=None, detail="")
        while True:
            job = client.job(job_id)
            done, total = document_progress(job)
            progress.update(task, completed=done, total=total, detail=progress_detail(job))
            if job["status"] in FINAL_JOB_STATES:
                return job
            if supervisor.dead():
                return None
            time.sleep(0.5)
