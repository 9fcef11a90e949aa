"""``regsearch``: the composition root. Starts components as processes and speaks HTTP to the API.

Components are imported lazily inside their commands (docs/architecture.md, import rules); nothing imports
this module. Exit status: 0 success, 2 bad input (the message names the field), 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

# the component commands register themselves on the same app
from regsearch.cli import (
    components,  # noqa: F401
    inspect_cmd,  # noqa: F401  (regsearch inspect)
)
from regsearch.cli.common import (
    api_call,
    api_client,
    app,
    checked_device,
    cli_settings,
    console,
    err,
    fail,
)
from regsearch.domain.spec import SpecError, load_spec
from regsearch.domain.states import JobState


def _wait(client: Any, job_id: str, poll_s: float = 1.0) -> dict[str, Any]:
    """A progress bar until the job ends (``Client.wait``, drawn on this command's console)."""
    return api_call(lambda: client.wait(job_id, progress=console, poll_s=poll_s))


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")],
    wait: Annotated[bool, typer.Option(help="show a progress bar, then the best configurations")] = False,
    idempotency_key: str | None = None,
) -> None:
    """Submit a search job; prints its id."""
    from regsearch.cli.spec_check import check_spec_file
    from regsearch.cli.tables import print_best

    settings = cli_settings()
    # checked against what the service's workers publish (its plugin families and trainers too)
    document = check_spec_file(spec).spec.model_dump(mode="json", exclude_none=True)
    with api_client(settings) as client:
        job = api_call(lambda: client.submit(document, idempotency_key))
        console.print(job["id"])
        if wait:
            job = _wait(client, job["id"])
            console.print(f"job {job['id']} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
            print_best(console, api_call(lambda: client.best(job["id"], 5)))


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")],
    as_json: Annotated[bool, typer.Option("--json", help="print the spec as the API would store it")] = False,
) -> None:
    """Check a spec with the same checks as POST /jobs; exit 0 when valid, 2 when not.

    The families, networks and trainers are those the running service's workers publish (asked
    from the API); without an API, what this machine knows, naming what it could not check. A
    dataset file is looked for in the data directory (REGSEARCH_DATA_DIR), and its kind checked."""
    from regsearch.cli.spec_check import check_spec_file

    checked = check_spec_file(spec)
    job_spec = checked.spec
    note = "\n".join(n for n in (_data_file_note(job_spec), checked.note()) if n) or None
    if as_json:
        print(json.dumps(job_spec.model_dump(mode="json", exclude_none=True), indent=2))
        return
    placements = job_spec.space.choices("placement")
    console.print(f"{spec}: valid. Job {job_spec.name!r}: dataset {job_spec.dataset.name}, "
                  f"model {job_spec.model.describe()}, {len(placements)} placement(s), "
                  f"{job_spec.budget.n_trials} trials ({job_spec.budget.parallelism} at a time), "
                  f"sampler {job_spec.sampler}, pruner {job_spec.pruner}"
                  + (f", confirm top {job_spec.confirm.top_k} x {job_spec.confirm.seeds} seeds" if job_spec.confirm else "")
                  + ".", highlight=False)
    if note:
        console.print(note, highlight=False, markup=False)


def _data_file_note(job_spec: Any) -> str | None:
    """Exit 2 when the spec's dataset file is missing from the data directory or of another kind;
    with a broker configured (the workers' data directories are their own) only a note, returned."""
    from regsearch.domain.data import FILE_DATASETS, DatasetError, resolve_data_path
    from regsearch.domain.data_checks import check_data_format

    dataset = job_spec.dataset
    if dataset.name not in FILE_DATASETS or not dataset.path:
        return None
    settings = cli_settings()
    try:
        path = resolve_data_path(settings.data_dir, dataset.path, folder=dataset.name == "images")
        check_data_format(path, dataset.name, dataset.path)
    except DatasetError as exc:
        if settings.broker_url is None:  # embedded: the workers read this very data directory
            fail(f"{exc} (data directory {settings.data_dir})", 2)
        return (f"note: {exc} (this machine's data directory {settings.data_dir}; "
                "the workers read their own, so only they can tell)")
    return None


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="a job id; all jobs when omitted")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the API's documents: one job, or {items: [...]}")] = False,
) -> None:
    """Jobs, or one job's progress (and its model: family and knobs)."""
    from regsearch.cli.tables import job_model, status_table

    with api_client(cli_settings()) as client:
        if job:
            jobs = [api_call(lambda: client.job(job))]
        else:
            jobs = [item if "counts" in item else api_call(lambda job_id=item["id"]: client.job(job_id))
                    for item in api_call(client.jobs)["items"]]
    if as_json:
        print(json.dumps(jobs[0] if job else {"items": jobs, "count": len(jobs)}, indent=2))
    elif not jobs:
        console.print("No jobs yet.")
    elif job:  # one job: its model on a line of its own, whatever the width
        console.print(status_table(jobs, console.width, with_model=False), highlight=False)
        console.print(f"model: {job_model(jobs[0]) or '-'}", highlight=False)
        if jobs[0].get("error"):  # a completed job's is why it ended early (not a failure)
            label = "ended" if jobs[0]["status"] == JobState.COMPLETED else "error"
            console.print(f"{label}: {jobs[0]['error']}", highlight=False, markup=False)
    else:
        console.print(status_table(jobs, console.width), highlight=False)


def _knobs_summary(schema: dict[str, Any]) -> str:
    """``hidden=[256, 256, 256] activation=relu``: a family's knobs with their defaults."""
    parts = []
    for name, prop in (schema.get("properties") or {}).items():
        default = prop.get("default") if isinstance(prop, dict) else None
        shown = default if isinstance(default, str) else json.dumps(default, separators=(", ", ":"))
        parts.append(f"{name}={shown}" if default is not None else name)
    return " ".join(parts) or "-"


def _networks_lines(items: list[dict[str, Any]]) -> list[str]:
    """What ``auto`` can trace: the networks live workers have installed (GET /families)."""
    auto = next((i for i in items if i["name"] == "auto"), None)
    if auto is None:
        return []
    networks = auto.get("networks")
    if networks is None:
        return ["auto: no live worker has said which networks it has installed yet (start one: regsearch worker)."]
    if not networks:
        return [("auto: no network installed on the live workers (entry point group regsearch.networks; "
                 "docs/networks.md).")]
    lines = [f"auto: the networks installed on the live workers ({len(networks)}), model: {{family: auto, network: NAME}}:"]
    for net in networks:
        state = f"does not load: {net['error']}" if net.get("error") else "ok"
        lines.append(f"  {net['name']}  {net.get('entry_point') or '-'}  ({state})")
    return lines


@app.command()
def families(as_json: Annotated[bool, typer.Option("--json", help="the API's document: {items: [...]}")] = False) -> None:
    """The model families on offer (built in and plugins), their knobs' defaults, and auto's networks."""
    from regsearch.cli.tables import KEEP, Col, fitted_table

    with api_client(cli_settings()) as client:
        items = api_call(client.families)
    if as_json:
        print(json.dumps({"items": items}, indent=2))
        return
    rows = [[i["name"], i["source"], _knobs_summary(i["knobs"]), i["slots_doc"]] for i in items]
    columns = [Col("family", justify="left"), Col("source", 2, "left"),
               Col("knobs (defaults)", KEEP, "left", wrap=True), Col("slots", 1, "left", wrap=True)]
    console.print(fitted_table(columns, rows, min(console.width, 80), title="Model families",
                               hint="--json shows them"))
    for line in _networks_lines(items):
        console.print(line, width=min(console.width, 80))


def _save_folder(save: Path) -> Path:
    """``--save``'s folder, created and writable, or exit 2 naming the path (before any download)."""
    import os
    import tempfile

    if save.exists() and not save.is_dir():
        fail(f"--save: {save} is a file, not a folder (give a folder; each trial goes in <folder>/<number>/)", 2)
    try:
        save.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=save).close()  # a folder we may create but not write into fails here
    except OSError as exc:
        fail(f"--save: cannot write into {save}: {exc.strerror or exc}", 2)
    if not os.access(save, os.W_OK | os.X_OK):
        fail(f"--save: cannot write into {save}: permission denied", 2)
    return save


def _objective(job_document: dict[str, Any]) -> str:
    """The job's (first) objective, read from its stored spec by the one view of it (StoredSpec:
    val_acc where the document has none, a former metric name as its current one)."""
    from regsearch.domain.stored_spec import StoredSpec

    return StoredSpec.read(job_document.get("spec")).objectives[0][0]


@app.command()
def best(job: str, top: Annotated[int, typer.Option(min=1, max=100)] = 5, as_json: Annotated[bool, typer.Option("--json")] = False,
         save: Annotated[Path | None, typer.Option(metavar="DIR", help="also write DIR/<number>/recipe.json and weights.safetensors")] = None) -> None:
    """The best configurations of a job, with their metrics and recipes."""
    from regsearch.cli.tables import print_best

    folder = _save_folder(save) if save is not None else None
    with api_client(cli_settings()) as client:
        items = api_call(lambda: client.best(job, top))
        objective = "val_acc" if as_json else _objective(api_call(lambda: client.job(job)))
        try:
            missing = api_call(lambda: client.download_many(job, [i["number"] for i in items], folder)) if folder else {}
        except OSError as exc:  # the folder was usable a moment ago: it filled up, or its rights changed
            fail(f"--save: cannot write into {folder}: {exc.strerror or exc}"
                 + (f" ({exc.filename})" if getattr(exc, "filename", None) else ""), 2)
    if as_json:
        print(json.dumps({"items": items}, indent=2))
    else:
        print_best(console, items, objective=objective)
    if missing:  # the others were saved; recipe.json is written for every listed trial
        fail("weights not saved: " + "; ".join(missing.values()))


REPORT_FORMATS = ("text", "md", "json")


@app.command()
def report(
    job: str,
    fmt: Annotated[str | None, typer.Option(
        "--format", show_default=False,
        help="text (tables fitted to the terminal), md (Markdown) or json; default: text on a terminal, "
             "md into a pipe or a file")] = None,
) -> None:
    """The evidence for a job: per placement, dropout band and momentum band, with 95% intervals."""
    if fmt is None:
        fmt = "text" if sys.stdout.isatty() else "md"
    if fmt not in REPORT_FORMATS:
        fail(f"--format: {fmt!r} is not one of {', '.join(REPORT_FORMATS)}", 2)
    with api_client(cli_settings()) as client:
        document = api_call(lambda: client.report(job))
    if fmt == "json":
        print(json.dumps(document, indent=2))
    elif fmt == "text":
        from regsearch.cli.report_text import print_report

        print_report(console, document)
    else:
        from regsearch.evidence import Report, render_markdown

        print(render_markdown(Report.model_validate(document)), end="")


@app.command()
def cancel(job: str) -> None:
    """Stop a job; running trials stop at their next epoch."""
    with api_client(cli_settings()) as client:
        answer = api_call(lambda: client.cancel(job))
    console.print(f"job {answer['id']}: cancellation requested")


@app.command()
def delete(
    job: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="delete without asking")] = False,
) -> None:
    """Delete a finished job: its trials, epochs, Optuna study and kept weights (cancel a running one first)."""
    with api_client(cli_settings()) as client:
        found = api_call(lambda: client.job(job))
        if not yes:
            counts = found.get("counts") or {}
            question = (f"Delete job {found['id']} ({found['name']}, {found['status']}, "
                        f"{sum(counts.values())} trial(s)) with its weights? This cannot be undone.")
            try:
                confirmed = typer.confirm(question, default=False)
            except typer.Abort:  # end of input: no answer is not a yes
                confirmed = False
            if not confirmed:
                fail(f"job {found['id']} not deleted", 1)
        api_call(lambda: client.delete(job))
    console.print(f"job {found['id']} deleted", highlight=False)


@app.command()
def trial(
    spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")],
    params: Annotated[str, typer.Option(help='JSON, e.g. \'{"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1}\'')],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, max=1024, help="torch threads (default: this process's share of the cores)")] = None,
) -> None:
    """Train one configuration in this process (no services): a line per epoch, then what it measured."""
    device = checked_device(device)
    from regsearch.cli.tables import print_trial, trial_document
    from regsearch.cli.trial_lines import EpochLines, trial_threads
    from regsearch.worker.datasets import DatasetError
    from regsearch.worker.families.auto import NetworkError
    from regsearch.worker.local import run_local_trial, validate_params
    from regsearch.worker.loop import NonFiniteLossError

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
    settings = cli_settings()
    n_threads, why = trial_threads(settings.data_dir, threads)
    # --json keeps stdout for the document: the lines go to stderr there.
    lines = EpochLines(err if as_json else console, job_spec.training.epochs)
    lines.start(f"training {job_spec.training.epochs} epochs ({n_threads} torch threads: {why})")
    try:
        local = run_local_trial(job_spec, parsed, settings.data_dir, device=device, on_epoch=lines.epoch,
                                threads=n_threads)
    except (DatasetError, NetworkError) as exc:  # the data, or an auto network that cannot be used
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
