"""``regsearch``: the composition root. Starts components as processes and speaks HTTP to the API.

Components are imported lazily inside their commands (DESIGN.md import rules); nothing imports
this module. Exit status: 0 success, 2 bad input (the message names the field), 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from regsearch.cli.tables import make_console
from regsearch.config import Settings, get_settings
from regsearch.domain.devices import DEVICE_CHOICES, parse_device
from regsearch.domain.spec import SpecError, load_spec

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Find where dropout and batch normalization belong in a network, and how strong they should be.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
# A terminal's own width (tables fit it); into a pipe, COLUMNS when set, else no truncation.
console = make_console(sys.stdout)
err = make_console(sys.stderr, stderr=True)
API_URL_HINT = "set the API's address with --api-url URL or REGSEARCH_API_URL"
_api_url: str | None = None  # the global --api-url, when given
EXAMPLE_SPEC = Path(__file__).with_name("examples") / "mnist1d-mlp.yaml"


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
    """A client for ``--api-url``, else REGSEARCH_API_URL, else the default address."""
    from regsearch.client import Client

    if _api_url is not None:
        settings = settings.model_copy(update={"api_url": _api_url})
    return Client.from_settings(settings)


def _api_call(call: Any) -> Any:
    from regsearch.client import ApiError

    try:
        return call()
    except ApiError as exc:
        fail(exc.message + (f" ({API_URL_HINT})" if exc.status == 0 else ""), 2 if exc.is_bad_input else 1)


def _print_version(value: bool) -> None:
    if value:
        from regsearch import __version__

        print(f"regsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    api_url: Annotated[str | None, typer.Option(
        "--api-url", metavar="URL", show_default=False,
        help="Where the API is, for the client commands (else REGSEARCH_API_URL, else http://127.0.0.1:8000).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version, help="Print the installed version and exit.")] = False,
) -> None:
    """Find where dropout and batch normalization belong in a network, and how strong they should be."""
    global _api_url
    if api_url is not None and not api_url.startswith(("http://", "https://")):
        fail(f"--api-url: {api_url!r} is not an http:// or https:// URL", 2)
    _api_url = api_url


def _device(device: str) -> str:
    """The ``--device`` value, checked (exit 2 naming the option when it is not a device)."""
    try:
        return str(parse_device(device))
    except ValueError:
        fail(f"--device: {device!r} is not {DEVICE_CHOICES}", 2)


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
    no_dashboard: bool = False,
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
                                           dashboard_port=None if no_dashboard else dashboard_port), str(log_dir))
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
def _load_spec_dict(path: Path) -> dict[str, Any]:
    try:
        return load_spec(path).model_dump(mode="json", exclude_none=True)
    except SpecError as exc:
        fail(str(exc), 2)


def _wait(client: Any, job_id: str, poll_s: float = 1.0) -> dict[str, Any]:
    """A progress bar until the job ends (``Client.wait``, drawn on this command's console)."""
    return _api_call(lambda: client.wait(job_id, progress=console, poll_s=poll_s))


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
            print_best(console, _api_call(lambda: client.best(job["id"], 5)))


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")],
    as_json: Annotated[bool, typer.Option("--json", help="print the spec as the API would store it")] = False,
) -> None:
    """Check a spec offline, with the same checks as POST /jobs; exit 0 when valid, 2 when not."""
    try:
        job_spec = load_spec(spec)
    except SpecError as exc:
        fail(str(exc), 2)
    if as_json:
        print(json.dumps(job_spec.model_dump(mode="json", exclude_none=True), indent=2))
        return
    placements = job_spec.space.choices("placement")
    console.print(f"{spec}: valid. Job {job_spec.name!r}: dataset {job_spec.dataset.name}, "
                  f"model {job_spec.model.family}, {len(placements)} placement(s), "
                  f"{job_spec.budget.n_trials} trials ({job_spec.budget.parallelism} at a time), "
                  f"sampler {job_spec.sampler}, pruner {job_spec.pruner}"
                  + (f", confirm top {job_spec.confirm.top_k} x {job_spec.confirm.seeds} seeds" if job_spec.confirm else "")
                  + ".", highlight=False)


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="a job id; all jobs when omitted")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the API's documents: one job, or {items: [...]}")] = False,
) -> None:
    """Jobs, or one job's progress."""
    from regsearch.cli.tables import status_table

    with _client(_settings()) as client:
        if job:
            jobs = [_api_call(lambda: client.job(job))]
        else:
            jobs = [item if "counts" in item else _api_call(lambda job_id=item["id"]: client.job(job_id))
                    for item in _api_call(client.jobs)["items"]]
    if as_json:
        print(json.dumps(jobs[0] if job else {"items": jobs, "count": len(jobs)}, indent=2))
    elif not jobs:
        console.print("No jobs yet.")
    else:
        console.print(status_table(jobs, console.width), highlight=False)


@app.command()
def best(job: str, top: Annotated[int, typer.Option(min=1, max=100)] = 5, as_json: Annotated[bool, typer.Option("--json")] = False,
         save: Annotated[Path | None, typer.Option(metavar="DIR", help="also write DIR/<number>/recipe.json and weights.safetensors")] = None) -> None:
    """The best configurations of a job, with their metrics and recipes."""
    from regsearch.cli.tables import print_best

    with _client(_settings()) as client:
        items = _api_call(lambda: client.best(job, top))
        missing = _api_call(lambda: client.download_many(job, [i["number"] for i in items], save)) if save else {}
    if as_json:
        print(json.dumps({"items": items}, indent=2))
    else:
        print_best(console, items)
    if missing:  # the others were saved; recipe.json is written for every listed trial
        fail("weights not saved: " + "; ".join(missing.values()))


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
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto")] = "auto",
) -> None:
    """Train one configuration in this process (no services) and print what it measured."""
    device = _device(device)
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
    try:
        local = run_local_trial(job_spec, parsed, _settings().data_dir, device=device)
    except DatasetError as exc:
        fail(str(exc), 2)
    except NonFiniteLossError as exc:
        fail(str(exc), 1)
    document = trial_document(local.params, local.recipe, local.layers, local.result.summary,
                              [e.as_dict() for e in local.result.epochs], local.result.device, local.data)
    if as_json:
        from regsearch.domain.jsonsafe import finite_or_none

        print(json.dumps(finite_or_none(document), indent=2))
    else:
        print_trial(console, document)


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




def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
