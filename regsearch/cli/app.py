"""``regsearch``: the composition root. Starts components as processes and speaks HTTP to the API.

Components are imported lazily inside their commands (DESIGN.md import rules); nothing imports
this module. Exit status: 0 success, 2 bad input (the message names the field), 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from regsearch.config import Settings, get_settings
from regsearch.domain.spec import SpecError, load_spec

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Find where dropout and batch normalization belong in a network, and how strong they should be.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
# Tables need room; a pipe or CI log is not a 80-column terminal.
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)
EXAMPLE_SPEC = Path(__file__).with_name("examples") / "mnist1d-mlp.yaml"
FINISHED = ("completed", "failed", "cancelled")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # noqa: BLE001 - any settings error is bad input; pydantic names the variable
        fail(f"configuration: {exc}", 2)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both end in the caller's ``finally`` (which stops the children).

    Set explicitly: a process started in the background by a shell inherits SIGINT ignored,
    and SIGTERM's default would leave the children running.
    """
    import signal

    def stop(*_args: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _client(settings: Settings) -> Any:
    from regsearch.client import Client

    return Client(settings)


def _api_call(call: Any) -> Any:
    from regsearch.client import ApiError

    try:
        return call()
    except ApiError as exc:
        fail(exc.message, 2 if exc.is_bad_input else 1)


# -- components -----------------------------------------------------------------------------
@app.command()
def api(host: str = "127.0.0.1", port: Annotated[int, typer.Option(min=1, max=65535)] = 8000) -> None:
    """Run the REST API (loopback by default; any other bind needs REGSEARCH_API_TOKEN)."""
    from regsearch.services.api.server import UnsafeBindError, check_bind, serve

    settings = _settings()
    try:
        check_bind(settings, host)
    except UnsafeBindError as exc:
        fail(str(exc), 2)
    from regsearch.store.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    serve(settings, host=host, port=port)


@app.command()
def coordinator() -> None:
    """Run the study coordinator (one per deployment)."""
    import signal

    from regsearch.services.coordinator import run_coordinator

    _logging()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_coordinator(_settings(), stop)


@app.command()
def worker(
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto")] = "auto",
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="trial processes")] = 1,
    queue: Annotated[str, typer.Option(help="the queue to consume")] = "regsearch",
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker: ``concurrency`` trial processes on one device."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", device):
        fail(f"--device: {device!r} is not cpu, cuda, cuda:N or auto", 2)
    from regsearch.worker.tasks import DEVICE_ENV, create_worker_app

    if device.startswith("cuda:"):
        # Pin the GPU before the pool forks; CUDA itself is initialized only in the children.
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        device = "cuda"
    os.environ[DEVICE_ENV] = device
    # K trial processes on C cores: C // K torch threads each, or they oversubscribe the CPU.
    threads = str(max(1, (os.cpu_count() or 1) // concurrency))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)
    settings = _settings()
    from regsearch.store.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    celery_app = create_worker_app(settings)
    celery_app.worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", "-Q", queue,
                            "-n", f"regsearch-{os.getpid()}@%h", "--without-gossip", "--without-mingle"])


@app.command()
def dashboard(host: str = "127.0.0.1", port: Annotated[int, typer.Option(min=1, max=65535)] = 8501) -> None:
    """Run the Streamlit dashboard."""
    from regsearch.dashboard.run import run_dashboard

    raise typer.Exit(run_dashboard(_settings(), port=port, host=host))


@app.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=64)] = 2,
    api_port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    dashboard_port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
    no_dashboard: bool = False,
) -> None:
    """API + coordinator + workers + dashboard as child processes; Ctrl-C stops them all."""
    from regsearch.cli.launcher import Supervisor, plan
    from regsearch.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.sqlalchemy_url)
    supervisor = Supervisor(settings, plan(settings, workers=workers, api_port=api_port,
                                           dashboard_port=None if no_dashboard else dashboard_port))
    _stop_on_signals()
    supervisor.start()
    console.print(f"regsearch up: API http://127.0.0.1:{api_port}"
                  + ("" if no_dashboard else f", dashboard http://127.0.0.1:{dashboard_port}")
                  + f", {workers} worker process(es), data in {settings.data_dir}. Ctrl-C stops.")
    try:
        while not supervisor.dead():
            time.sleep(0.5)
        name, code = supervisor.dead()[0]
        err.print(f"{name} exited with status {code}; stopping the rest")
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        supervisor.stop()


# -- client commands ------------------------------------------------------------------------
def _load_spec_dict(path: Path) -> dict[str, Any]:
    try:
        return load_spec(path).model_dump(mode="json", exclude_none=True)
    except SpecError as exc:
        fail(str(exc), 2)


def _wait(client: Any, job_id: str, poll_s: float = 1.0) -> dict[str, Any]:
    from regsearch.cli.tables import job_progress

    job = _api_call(lambda: client.job(job_id))
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(job["name"], total=job_progress(job)[1], detail="")
        while True:
            done, total = job_progress(job)
            counts = job["counts"]
            best = ((job.get("best") or {}).get("metrics") or {}).get("val_acc")
            detail = f"running {counts['running']} pruned {counts['pruned']} failed {counts['failed']}"
            if isinstance(best, (int, float)):
                detail += f" best val_acc {best:.4f}"
            progress.update(task, completed=done, total=total, detail=detail)
            if job["status"] in FINISHED:
                return job
            time.sleep(poll_s)
            job = _api_call(lambda: client.job(job_id))


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")],
    wait: Annotated[bool, typer.Option(help="show a progress bar, then the best configurations")] = False,
    idempotency_key: str | None = None,
) -> None:
    """Submit a search job; prints its id."""
    from regsearch.cli.tables import print_best

    settings = _settings()
    document = _load_spec_dict(spec)
    with _client(settings) as client:
        job = _api_call(lambda: client.submit(document, idempotency_key))
        console.print(job["id"])
        if wait:
            job = _wait(client, job["id"])
            console.print(f"job {job['id']} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
            print_best(console, _api_call(lambda: client.best(job["id"], 5))["items"])


@app.command()
def status(job: Annotated[str | None, typer.Argument(help="a job id; all jobs when omitted")] = None) -> None:
    """Jobs, or one job's progress."""
    from regsearch.cli.tables import status_line

    with _client(_settings()) as client:
        jobs = [_api_call(lambda: client.job(job))] if job else _api_call(client.jobs)["items"]
        if not jobs:
            console.print("No jobs yet.")
        for item in jobs:
            detail = item if "counts" in item else _api_call(lambda job_id=item["id"]: client.job(job_id))
            console.print(status_line(detail), highlight=False)


@app.command()
def best(job: str, top: Annotated[int, typer.Option(min=1, max=100)] = 5, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The best configurations of a job, with their metrics and recipes."""
    from regsearch.cli.tables import print_best

    with _client(_settings()) as client:
        items = _api_call(lambda: client.best(job, top))["items"]
    if as_json:
        print(json.dumps({"items": items}, indent=2))
    else:
        print_best(console, items)


REPORT_FORMATS = ("md", "json")


@app.command()
def report(
    job: str,
    fmt: Annotated[str, typer.Option("--format", help="md (Markdown) or json")] = "md",
) -> None:
    """The evidence for a job: per placement, dropout band and momentum band, with 95% intervals."""
    if fmt not in REPORT_FORMATS:
        fail(f"--format: {fmt!r} is not one of {', '.join(REPORT_FORMATS)}", 2)
    with _client(_settings()) as client:
        document = _api_call(lambda: client.report(job))
    if fmt == "json":
        print(json.dumps(document, indent=2))
        return
    from regsearch.evidence import Report, render_markdown

    text = render_markdown(Report.model_validate(document))
    if sys.stdout.isatty():  # rendered on a terminal; plain Markdown into a pipe or a file
        from rich.markdown import Markdown

        console.print(Markdown(text))
    else:
        print(text, end="")


@app.command()
def cancel(job: str) -> None:
    """Stop a job; running trials stop at their next epoch."""
    with _client(_settings()) as client:
        answer = _api_call(lambda: client.cancel(job))
    console.print(f"job {answer['id']}: cancellation requested")


@app.command()
def trial(
    spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")],
    params: Annotated[str, typer.Option(help='JSON, e.g. \'{"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1}\'')],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    device: str = "auto",
) -> None:
    """Train one configuration in this process (no services) and print what it measured."""
    from regsearch.cli.tables import print_trial, trial_document
    from regsearch.worker.datasets import DatasetError
    from regsearch.worker.local import run_local_trial, validate_params
    from regsearch.worker.train import NonFiniteLossError

    try:
        job_spec = load_spec(spec)
    except SpecError as exc:
        fail(str(exc), 2)
    try:
        parsed = validate_params(job_spec, json.loads(params))
    except json.JSONDecodeError as exc:
        fail(f"--params: not valid JSON ({exc})", 2)
    except ValueError as exc:
        fail(str(exc), 2)
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", device):
        fail(f"--device: {device!r} is not cpu, cuda, cuda:N or auto", 2)
    try:
        local = run_local_trial(job_spec, parsed, _settings().data_dir, device=device)
    except DatasetError as exc:
        fail(str(exc), 2)
    except NonFiniteLossError as exc:
        fail(str(exc), 1)
    document = trial_document(local.params, local.recipe, local.layers, local.result.summary,
                              [e.as_dict() for e in local.result.epochs], local.result.device)
    if as_json:
        from regsearch.domain.jsonsafe import finite_or_none

        print(json.dumps(finite_or_none(document), indent=2))
    else:
        print_trial(console, document)


@app.command()
def demo(workers: Annotated[int, typer.Option(min=1, max=16)] = 2, spec: Path = EXAMPLE_SPEC) -> None:
    """``up`` on embedded defaults, submit the bundled example, wait, print the comparison, stop."""
    from regsearch.cli.demo import run_demo

    _stop_on_signals()
    try:
        code = run_demo(_settings(), _load_spec_dict(spec), workers=workers, console=console)
    except KeyboardInterrupt:  # run_demo stopped everything on its way out
        code = 130
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations."""
    from regsearch.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.sqlalchemy_url)
    console.print(f"database at {settings.sqlalchemy_url.split('@')[-1]} is up to date")




def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
