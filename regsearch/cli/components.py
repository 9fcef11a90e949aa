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
    app,
    checked_device,
    cli_settings,
    configure_logging,
    console,
    db_app,
    err,
    fail,
    load_spec_document,
    stop_on_signals,
)
from regsearch.config import Settings
from regsearch.domain.devices import parse_device


def _ready_database(settings: Settings, *, broker: bool = True) -> None:
    """Exit 2 naming what is missing unless the database (and the broker) answer; then migrate."""
    from regsearch.cli.preflight import require
    from regsearch.store.db import StoreError
    from regsearch.store.migrate import upgrade

    require(settings, broker=broker)
    try:
        upgrade(settings.sqlalchemy_url)
    except StoreError as exc:  # gone between the check and the migration
        fail(str(exc), 2)


def _backends(settings: Settings) -> str:
    """``database ..., broker ...`` as ``up`` prints them (passwords masked)."""
    from regsearch.cli.preflight import mask_url

    broker = (mask_url(settings.broker_url) if settings.broker_url
              else f"embedded (a folder: {settings.queue_dir})")
    return f"database {mask_url(settings.sqlalchemy_url)}; broker {broker}"


@app.command()
def api(host: str = "127.0.0.1", port: Annotated[int, typer.Option(min=1, max=65535)] = 8000) -> None:
    """Run the REST API (loopback by default; any other bind needs REGSEARCH_API_TOKEN)."""
    from regsearch.services.api.server import UnsafeBindError, check_bind, serve

    settings = cli_settings()
    try:
        check_bind(settings, host)
    except UnsafeBindError as exc:
        fail(str(exc), 2)
    _ready_database(settings)
    from regsearch import failpoints

    failpoints.hit("api.serve")  # the fault tests' way to make a started API die
    serve(settings, host=host, port=port)


@app.command()
def coordinator() -> None:
    """Run the study coordinator (one per deployment)."""
    import signal

    from regsearch.cli.preflight import require
    from regsearch.services.coordinator import run_coordinator

    settings = cli_settings()
    require(settings)  # run_coordinator migrates itself
    configure_logging()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_coordinator(settings, stop)


@app.command()
def worker(
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto")] = "auto",
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="trial processes")] = 1,
    queue: Annotated[str, typer.Option(help="the queue to consume")] = "regsearch",
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker: --concurrency K trial processes on one device."""
    parsed = parse_device(checked_device(device))
    from regsearch.worker.tasks import DEVICE_ENV, create_worker_app

    if parsed.index is not None:
        # Pin the GPU before the pool forks; CUDA itself is initialized only in the children.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(parsed.index)
    os.environ[DEVICE_ENV] = parsed.kind
    # K trial processes on C cores: C // K torch threads each, or they oversubscribe the CPU
    from regsearch.cli.cores import default_threads

    default_threads(concurrency)
    settings = cli_settings()
    _ready_database(settings)
    celery_app = create_worker_app(settings)
    celery_app.worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", "-Q", queue,
                            "-n", f"regsearch-{os.getpid()}@%h", "--without-gossip", "--without-mingle"])


@app.command()
def dashboard(host: str = "127.0.0.1", port: Annotated[int, typer.Option(min=1, max=65535)] = 8501) -> None:
    """Run the Streamlit dashboard."""
    from regsearch.cli.preflight import require
    from regsearch.dashboard.run import run_dashboard

    settings = cli_settings()
    require(settings, broker=False)  # it reads the database; the broker is the API's business
    raise typer.Exit(run_dashboard(settings, port=port, host=host))


@app.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=64)] = 2,
    api_port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    dashboard_port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard", help="start the dashboard too")] = True,
) -> None:
    """API + coordinator + workers + dashboard as child processes; Ctrl-C stops them all.

    Prints one line per component; each component's own output goes to DATA_DIR/logs/NAME.log.
    Checks first, starting nothing when one fails: one `up` per data directory (DATA_DIR/up.lock)
    and free ports (exit 1 naming what holds them), the database and the broker (exit 2).
    Exits 1 when a component dies (the others are stopped), 0 after Ctrl-C or SIGTERM.
    """
    from regsearch.cli.datalock import DataDirBusy, DataDirLock
    from regsearch.cli.launcher import Supervisor, plan
    from regsearch.cli.ports import taken_ports
    from regsearch.client import Client

    settings = cli_settings()
    api_url = f"http://127.0.0.1:{api_port}"
    settings = settings.model_copy(update={"api_url": api_url})  # the children's REGSEARCH_API_URL
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire(workers=workers)
    except DataDirBusy as exc:
        fail(str(exc), 1)
    ports = {"the API": api_port, **({"the dashboard": dashboard_port} if dashboard else {})}
    if dashboard and dashboard_port == api_port:
        fail(f"--api-port and --dashboard-port are both {api_port}", 2)
    taken = taken_ports(ports)
    if taken:
        fail("; ".join(taken) + ". Nothing was started: stop it, or choose other ports with "
             "--api-port / --dashboard-port", 1)
    _ready_database(settings)
    log_dir = settings.data_dir / "logs"
    supervisor = Supervisor(settings, plan(settings, workers=workers, api_port=api_port,
                                           dashboard_port=dashboard_port if dashboard else None), str(log_dir),
                            pass_fds=lock.fds())
    what = {"api": f"{api_url}  (docs: {api_url}/docs)", "coordinator": "schedules the trials",
            "worker": f"{workers} trial process(es)", "dashboard": f"http://127.0.0.1:{dashboard_port}"}
    stop_on_signals()
    code = 0
    try:
        supervisor.start()
        console.print(f"regsearch up: data in {settings.data_dir}; each component's output in {log_dir}",
                      highlight=False, markup=False)
        console.print(f"  {_backends(settings)}", highlight=False, markup=False)
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
        err.print(f"error: {name} exited with status {status}; stopping the rest. "
                  f"The end of {supervisor.log_path(name)}:", style="bold red")
        for line in supervisor.log_tail(name):
            err.print(f"  {line}", highlight=False, markup=False)
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        supervisor.stop()
        lock.release()
    raise typer.Exit(code)


# -- client commands ------------------------------------------------------------------------


@app.command()
def demo(workers: Annotated[int, typer.Option(min=1, max=16)] = 2, spec: Path = EXAMPLE_SPEC) -> None:
    """Start everything on the embedded defaults, run the bundled example, print the comparison, stop."""
    from regsearch.cli.datalock import DataDirBusy, DataDirLock
    from regsearch.cli.demo import run_demo

    settings = cli_settings()
    document = load_spec_document(spec)
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire(workers=workers)
    except DataDirBusy as exc:
        fail(str(exc), 1)
    stop_on_signals()
    try:
        _ready_database(settings)
        code = run_demo(settings, document, workers=workers, console=console, pass_fds=lock.fds())
    except KeyboardInterrupt:  # run_demo stopped everything on its way out
        code = 130
    finally:
        lock.release()
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(
    create: Annotated[bool, typer.Option("--create", help="create the PostgreSQL database first when it does not exist")] = False,
) -> None:
    """Apply the database migrations (--create: make the database first)."""
    from regsearch.cli.preflight import mask_url
    from regsearch.store.db import StoreError, create_database

    settings = cli_settings()
    url = mask_url(settings.sqlalchemy_url)
    if create:
        try:
            if create_database(settings.sqlalchemy_url):
                console.print(f"created the database {url}", highlight=False, markup=False)
        except StoreError as exc:
            fail(f"{exc} ({url})", 2)
    _ready_database(settings, broker=False)
    console.print(f"database {url} is up to date", highlight=False, markup=False)
