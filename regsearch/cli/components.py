"""The component commands: ``api``, ``coordinator``, ``worker``, ``dashboard``, ``up``, ``demo``
and ``db upgrade``. Each imports its component lazily (docs/architecture.md, import rules)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from regsearch.cli.common import (
    EXAMPLE_SPEC,
    _device,
    _load_spec_dict,
    _logging,
    _settings,
    _stop_on_signals,
    app,
    console,
    db_app,
    err,
    fail,
)
from regsearch.domain.devices import parse_device


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
    """Run a Celery worker: --concurrency K trial processes on one device."""
    parsed = parse_device(_device(device))
    from regsearch.worker.tasks import DEVICE_ENV, create_worker_app

    if parsed.index is not None:
        # Pin the GPU before the pool forks; CUDA itself is initialized only in the children.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(parsed.index)
    os.environ[DEVICE_ENV] = parsed.kind
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
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard", help="start the dashboard too")] = True,
) -> None:
    """API + coordinator + workers + dashboard as child processes; Ctrl-C stops them all.

    Prints one line per component; each component's own output goes to DATA_DIR/logs/NAME.log.
    Exits 1 when a component dies (the others are stopped), 0 after Ctrl-C or SIGTERM.
    """
    from regsearch.cli.launcher import Supervisor, plan
    from regsearch.client import Client
    from regsearch.store.migrate import upgrade

    settings = _settings()
    api_url = f"http://127.0.0.1:{api_port}"
    settings = settings.model_copy(update={"api_url": api_url})  # the children's REGSEARCH_API_URL
    upgrade(settings.sqlalchemy_url)
    log_dir = settings.data_dir / "logs"
    supervisor = Supervisor(settings, plan(settings, workers=workers, api_port=api_port,
                                           dashboard_port=dashboard_port if dashboard else None), str(log_dir))
    what = {"api": f"{api_url}  (docs: {api_url}/docs)", "coordinator": "schedules the trials",
            "worker": f"{workers} trial process(es)", "dashboard": f"http://127.0.0.1:{dashboard_port}"}
    _stop_on_signals()
    code = 0
    try:
        supervisor.start()
        console.print(f"regsearch up: data in {settings.data_dir}; each component's output in {log_dir}",
                      highlight=False)
        for component in supervisor.components:
            console.print(f"  {component.name:<12} {what.get(component.name, '')}", highlight=False)
        if api_port != 8000:
            console.print(f"client commands: regsearch --api-url {api_url} status (or REGSEARCH_API_URL={api_url})",
                          highlight=False)
        ready = False
        with Client(settings) as client:
            while not supervisor.dead():
                if not ready and client.ready():
                    ready = True
                    console.print("ready. Ctrl-C stops everything.", highlight=False)
                time.sleep(0.5)
        name, status = supervisor.dead()[0]
        code = 1
        err.print(f"[bold red]error:[/] {name} exited with status {status}; stopping the rest. "
                  f"The end of {supervisor.log_path(name)}:", highlight=False)
        for line in supervisor.log_tail(name):
            err.print(f"  {line}", highlight=False, markup=False)
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        supervisor.stop()
    raise typer.Exit(code)


# -- client commands ------------------------------------------------------------------------


@app.command()
def demo(workers: Annotated[int, typer.Option(min=1, max=16)] = 2, spec: Path = EXAMPLE_SPEC) -> None:
    """Start everything on the embedded defaults, run the bundled example, print the comparison, stop."""
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
