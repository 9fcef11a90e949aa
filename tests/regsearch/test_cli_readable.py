"""What the CLI shows is readable and true: tables at 80 columns, --api-url, `up`'s exit status and
quiet output, validate / --version / plain help, one device parser."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from regsearch.cli.launcher import free_port
from regsearch.cli.tables import (
    PIPE_WIDTH,
    comparison_table,
    make_console,
    print_best,
    print_trial,
    status_table,
)
from tests.regsearch.test_cli import ROOT, regsearch, write_spec

ELLIPSIS = "…"

CONFIRMED = {"n": 3, "numbers": [31, 40, 41], "seeds": [None, 1, 2], "metrics": {
    "val_acc": {"n": 3, "mean": 0.7501, "std": 0.0035, "low": 0.741, "high": 0.759},
    "test_acc": {"n": 3, "mean": 0.7012, "std": 0.01, "low": 0.69, "high": 0.71},
    "gap": {"n": 3, "mean": 0.1216, "std": 0.01, "low": 0.11, "high": 0.13}}}
BEST_ITEMS = [
    {"number": 31, "recipe": {"blocks": []}, "confirmation": CONFIRMED,
     "params": {"placement": "bn-act-drop", "dropout": 0.139, "bn_momentum": 0.0993, "dropout_layers": "last-2",
                "bn_layers": "all"},
     "metrics": {"val_acc": 0.6812, "test_acc": 0.6781, "gap": 0.1234, "epochs_to_95pct_best": 18}},
    {"number": 144, "recipe": None, "confirmation": None, "params": {"placement": "drop-bn-act", "dropout": 0.3},
     "metrics": {"val_acc": 0.6543, "test_acc": 0.61, "gap": 0.2, "epochs_to_95pct_best": 9}},
]


def _assert_fits(text: str, width: int) -> None:
    assert ELLIPSIS not in text, f"a cell was cut:\n{text}"
    too_long = [line for line in text.splitlines() if len(line.rstrip()) > width]
    assert too_long == [], "\n".join(too_long)


@pytest.mark.parametrize("confirmed", [True, False])
def test_the_best_table_fits_80_columns_without_cutting_the_key_columns(confirmed: bool) -> None:
    items = BEST_ITEMS if confirmed else [{**item, "confirmation": None} for item in BEST_ITEMS]
    console = Console(width=80, record=True)
    print_best(console, items)
    text = console.export_text()
    _assert_fits(text, 80)
    rows = [line for line in text.splitlines() if "bn-act-drop" in line or "drop-bn-act" in line]
    assert len(rows) == 2, "one line per configuration"
    header = next(line for line in text.splitlines() if "placement" in line).split()
    assert header[:2] == ["#", "placement"] and {"val_acc", "test_acc", "gap"} <= set(header), "generalization kept"
    if confirmed:  # a confirmed configuration: its means over its runs, the objective with its interval
        assert rows[0].split()[:2] == ["31", "bn-act-drop"] and "0.750 [0.741, 0.759]" in rows[0]
        assert rows[0].split()[-2:] == ["0.701", "0.122"], "test_acc and gap over the runs, whole"
    else:
        assert rows[0].split()[:2] == ["31", "bn-act-drop"] and rows[0].split()[-3:] == ["0.681", "0.678", "0.123"]
    assert rows[1].split()[:2] == ["144", "drop-bn-act"] and rows[1].split()[-3:] == ["0.654", "0.610", "0.200"]
    assert "Not shown at this width" in text and "--json" in text, "the caption names what was left out"


def test_a_wide_console_shows_every_column() -> None:
    console = Console(width=PIPE_WIDTH, record=True)
    print_best(console, BEST_ITEMS)
    text = console.export_text()
    assert "Not shown" not in text
    assert "0.750 [0.741, 0.759]" in text and "drop:last-2 bn:all" in text and "95% best ep." in text


def test_the_comparison_and_status_tables_fit_80_columns() -> None:
    from regsearch.evidence import build_report

    spec = {"name": "c", "dataset": {"name": "digits"}, "space": {"placement": ["bn-act-drop", "act-drop"]}}
    trials = [{"number": n, "state": "complete", "seed": None, "confirm_of": None,
               "params": {"placement": p, "dropout": 0.1 * (n + 1), "bn_momentum": 0.1},
               "metrics": {"val_acc": v, "test_acc": v - 0.01, "gap": 0.1 + n / 100, "epochs_to_95pct_best": 3 + n}}
              for n, (p, v) in enumerate([("bn-act-drop", 0.71), ("bn-act-drop", 0.73), ("bn-act-drop", 0.75),
                                          ("act-drop", 0.61), ("act-drop", 0.64), ("act-drop", 0.62)])]
    document = build_report(spec, trials, job_id="j", status="completed").model_dump(mode="json")
    console = Console(width=80, record=True)
    console.print(comparison_table(document, console.width))
    text = console.export_text()
    _assert_fits(text, 80)
    assert "bn-act-drop" in text and "act-drop" in text and "0.730" in text, "placement and mean, whole"

    jobs = [{"id": "0123456789ab", "name": "mnist1d-placement-with-a-long-name", "status": "running",
             "counts": {"queued": 1, "running": 2, "complete": 10, "pruned": 3, "failed": 1},
             "n_trials": 48, "n_confirm": 9, "best": {"metrics": {"val_acc": 0.6812}}}]
    console = Console(width=80, record=True)
    console.print(status_table(jobs, console.width))
    text = console.export_text()
    _assert_fits(text, 80)
    assert "0123456789ab" in text and "running" in text and "14/57" in text


STATUS_JOB = {"id": "0123456789ab", "name": "cifar-resnet", "status": "completed",
              "counts": {"complete": 3}, "n_trials": 3, "n_confirm": 0, "best": {"metrics": {"val_acc": 0.7}},
              "spec": {"name": "cifar-resnet", "dataset": {"name": "digits"},
                       "model": {"family": "resnet", "depth": 20, "width": 16, "activation": "relu"}}}
RESNET = "resnet depth=20 width=16 activation=relu"


def test_the_status_list_shows_the_model_where_it_fits() -> None:
    other = {**STATUS_JOB, "id": "ba9876543210", "spec": {"name": "m", "dataset": {"name": "digits"}}}
    wide = Console(width=160, record=True)
    wide.print(status_table([STATUS_JOB, other], wide.width))
    text = wide.export_text()
    assert RESNET in text and "mlp hidden=[256,256,256] activation=relu" in text and "Not shown" not in text
    narrow = Console(width=80, record=True)
    narrow.print(status_table([STATUS_JOB, other], narrow.width))
    text = narrow.export_text()
    _assert_fits(text, 80)
    assert "0123456789ab" in text and "completed" in text and "3/3" in text
    assert "model" in text.split("Not shown at this width:")[-1], "the model column goes first, and is named"
    bare = Console(width=160, record=True)  # documents without a spec (GET /jobs): no empty column
    bare.print(status_table([{k: v for k, v in STATUS_JOB.items() if k != "spec"}], bare.width))
    assert "model" not in bare.export_text()


def test_status_of_one_job_prints_its_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from regsearch.cli.app import app
    from regsearch.client import Client

    monkeypatch.setattr(Client, "job", lambda self, job_id: STATUS_JOB)
    result = CliRunner().invoke(app, ["status", "0123456789ab"])
    assert result.exit_code == 0, result.output
    assert f"model: {RESNET}" in result.output and "3/3" in result.output


def test_the_status_list_shows_the_model_line_of_get_jobs_items(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from regsearch.cli.app import app
    from regsearch.cli.common import console
    from regsearch.client import Client

    item = {**{k: v for k, v in STATUS_JOB.items() if k != "spec"}, "model": RESNET}  # GET /jobs: no spec
    monkeypatch.setattr(Client, "jobs", lambda self, *a, **k: {"items": [item], "count": 1})
    monkeypatch.setattr(console, "width", 160)
    wide = CliRunner().invoke(app, ["status"])
    assert wide.exit_code == 0, wide.output
    assert RESNET in wide.output and "Not shown" not in wide.output
    monkeypatch.setattr(console, "width", 80)
    narrow = CliRunner().invoke(app, ["status"])
    assert narrow.exit_code == 0, narrow.output
    _assert_fits(narrow.output, 80)
    assert RESNET not in narrow.output and "0123456789ab" in narrow.output
    assert "model" in narrow.output.split("Not shown at this width:")[-1], "dropped, and named in the caption"


@pytest.mark.parametrize(("status", "line"), [
    ("completed", "ended: search space exhausted: 5 distinct configurations"),
    ("failed", "error: search space exhausted: 5 distinct configurations"),
])
def test_status_of_one_job_prints_why_it_ended(monkeypatch: pytest.MonkeyPatch, status: str, line: str) -> None:
    from typer.testing import CliRunner

    from regsearch.cli.app import app
    from regsearch.client import Client

    job = {**STATUS_JOB, "status": status, "error": "search space exhausted: 5 distinct configurations"}
    monkeypatch.setattr(Client, "job", lambda self, job_id: job)
    result = CliRunner().invoke(app, ["status", "0123456789ab"])
    assert result.exit_code == 0, result.output
    assert line in result.output and f"model: {RESNET}" in result.output
    monkeypatch.setattr(Client, "job", lambda self, job_id: {**job, "error": None})
    quiet = CliRunner().invoke(app, ["status", "0123456789ab"])
    assert "ended:" not in quiet.output and "error:" not in quiet.output


def test_the_trial_tables_fit_80_columns() -> None:
    document = {"device": "cpu", "params": {"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1},
                "metrics": {"val_acc": 0.71234, "test_acc": 0.7, "gap": 0.05, "epochs_to_95pct_best": 2, "mean_val_acc": 0.6,
                            "seconds_per_epoch": 0.0123, "epochs_run": 2},
                "epochs": [{"epoch": 1, "train_loss": 1.2, "train_acc": 0.5, "val_loss": 1.3, "val_acc": 0.45,
                            "seconds": 0.1}],
                "layers": ["Linear(64->32)", "ReLU"], "recipe": {"blocks": []}}
    console = Console(width=80, record=True)
    print_trial(console, document)
    text = console.export_text()
    _assert_fits(text, 80)
    assert "epochs_to_95pct_best" in text and "seconds_per_epoch" in text and "0.712" in text


def test_piped_output_is_not_cut_at_a_fixed_width() -> None:
    assert make_console(io.StringIO(), environ={}).width == PIPE_WIDTH > 120, "a pipe: no truncation"
    assert make_console(io.StringIO(), environ={"COLUMNS": "80"}).width == 80, "COLUMNS is the width asked for"


def test_the_trial_command_at_columns_80(tmp_path: Path, data_dir: Path) -> None:
    spec = write_spec(tmp_path, training={"epochs": 2})
    params = '{"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1}'
    result = regsearch("trial", str(spec), "--params", params,
                       env={"REGSEARCH_DATA_DIR": str(data_dir), "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    tables, _, recipe = result.stdout.partition("Recipe:")
    _assert_fits(tables, 80)  # the recipe is one JSON line, to copy whole
    assert ELLIPSIS not in recipe
    assert "val_acc" in tables and "Per-epoch curve" in tables and "Trial on cpu" in tables


# -- --api-url ------------------------------------------------------------------------------
def test_the_unreachable_api_error_names_api_url_and_the_variable() -> None:
    result = regsearch("--api-url", "http://127.0.0.1:9", "status", env={"REGSEARCH_API_URL": "http://127.0.0.1:8"})
    assert result.returncode == 1
    assert "cannot reach the API at http://127.0.0.1:9" in result.stderr, "--api-url wins over the variable"
    assert "--api-url" in result.stderr and "REGSEARCH_API_URL" in result.stderr
    bad = regsearch("--api-url", "127.0.0.1:9", "status")
    assert bad.returncode == 2 and "--api-url" in bad.stderr


@pytest.mark.timeout(120)
def test_client_commands_reach_an_api_on_another_port(data_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "REGSEARCH_DATA_DIR": str(data_dir)}
    api = subprocess.Popen([sys.executable, "-m", "regsearch", "api", "--port", str(port)], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/healthz", api)
        listed = regsearch("--api-url", url, "status", env={"REGSEARCH_DATA_DIR": str(data_dir)})
        assert listed.returncode == 0 and "No jobs yet." in listed.stdout, listed.stderr
        as_json = regsearch("--api-url", url, "status", "--json")
        assert as_json.returncode == 0 and json.loads(as_json.stdout) == {"items": [], "count": 0}
        by_variable = regsearch("status", env={"REGSEARCH_API_URL": url})
        assert by_variable.returncode == 0 and "No jobs yet." in by_variable.stdout
    finally:
        api.terminate()
        api.wait(30)


def _wait_for(url: str, process: subprocess.Popen[str] | subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout_s}s")


# -- up -------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_up_exits_non_zero_naming_the_component_that_died(data_dir: Path) -> None:
    # up refuses a taken port before it starts anything (test_cli_preflight), so the API dies
    # after its start through a failpoint.
    result = regsearch("up", "--no-dashboard", "--workers", "1", "--api-port", str(free_port()),
                       env={"REGSEARCH_DATA_DIR": str(data_dir), "REGSEARCH_FAILPOINTS": "api.serve=raise"},
                       timeout=90)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "api exited with status" in result.stderr and "stopping the rest" in result.stderr
    assert "api.log" in result.stderr, "says where the component's own message is"
    assert "failpoint api.serve" in result.stderr.lower(), "and shows the end of it"


BANNER_AND_NOISE = ("-------------- [queues]", "SecurityWarning", "alembic", "No hostname was supplied",
                    "Uvicorn running", "[tasks]")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_up_prints_one_line_per_component_and_logs_the_rest(data_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "REGSEARCH_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    up = subprocess.Popen([sys.executable, "-m", "regsearch", "up", "--no-dashboard", "--workers", "1",
                           "--api-port", str(port)], env=env, cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(f"http://127.0.0.1:{port}/readyz", up, 90)
        time.sleep(3)  # the worker prints its banner once it is connected
        up.send_signal(signal.SIGINT)
        stdout, stderr = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 0, stdout + stderr
    noise = [n for n in BANNER_AND_NOISE if n in stdout or n in stderr]
    assert noise == [], f"{noise} on the terminal:\n{stdout}\n{stderr}"
    lines = stdout.splitlines()
    for name in ("api", "coordinator", "worker"):
        assert sum(line.split()[:1] == [name] for line in lines) == 1, f"one line for {name}:\n{stdout}"
    assert f"http://127.0.0.1:{port}" in stdout and f"--api-url http://127.0.0.1:{port}" in stdout
    logs = data_dir / "logs"
    for name in ("api", "coordinator", "worker"):
        assert (logs / f"{name}.log").stat().st_size > 0, name
    assert "regsearch.run_trial" in (logs / "worker.log").read_text(), "Celery's banner is in the worker's log"
    assert "Uvicorn running" in (logs / "api.log").read_text()


# -- validate, --version, help --------------------------------------------------------------
def test_validate_checks_a_spec_offline(tmp_path: Path) -> None:
    good = regsearch("validate", str(ROOT / "examples" / "mnist1d-placement.yaml"), env={"REGSEARCH_API_URL": "http://127.0.0.1:9"})
    assert good.returncode == 0 and "valid" in good.stdout, good.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: x\ndataset: {name: digits}\nspace:\n  dropuot: 0.3\n")
    bad = regsearch("validate", str(typo))
    assert bad.returncode == 2
    assert f"{typo}:4: space.dropuot: unknown field; did you mean `dropout`?" in bad.stderr
    assert "Extra inputs are not permitted" not in bad.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndataset: {name: digits\nspace: [\n")
    result = regsearch("validate", str(broken))
    assert result.returncode == 2 and f"{broken}:3" in result.stderr and "not valid YAML" in result.stderr
    assert "<unicode string>" not in result.stderr
    as_json = regsearch("validate", str(ROOT / "examples" / "mnist1d-placement.yaml"), "--json")
    assert json.loads(as_json.stdout)["name"] == "mnist1d-placement"


def test_submit_names_the_file_and_line_of_a_bad_field(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: x\ndataset: {name: digits}\ntrainig:\n  epochs: 2\n")
    result = regsearch("submit", str(typo))
    assert result.returncode == 2 and f"{typo}:3: trainig: unknown field; did you mean `training`?" in result.stderr


def test_version_and_plain_help() -> None:
    from typer.testing import CliRunner

    import regsearch as package
    from regsearch.cli.app import app

    version = regsearch("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"regsearch {package.__version__}"
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "--api-url" in top.output and "--version" in top.output
    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]  # type: ignore[union-attr]
    assert "validate" in names
    for name in names:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "``" not in result.output, f"raw RST in `regsearch {name} --help`"
    assert "``" not in top.output


# -- one device parser ----------------------------------------------------------------------
def test_one_device_parser_for_the_cli_and_the_trainer() -> None:
    from regsearch.domain.devices import Device, parse_device

    assert parse_device("auto") == Device("auto")
    assert parse_device("cpu") == Device("cpu")
    assert parse_device("cuda") == Device("cuda")
    assert parse_device("cuda:3") == Device("cuda", 3) and str(parse_device("cuda:3")) == "cuda:3"
    for bad in ("tpu", "cuda:", "cuda:x", "cpu:0", "auto:1", "CUDA", "", "cuda:1:2"):
        with pytest.raises(ValueError, match="is not auto, cpu, cuda or cuda:N"):
            parse_device(bad)
    for command in (("worker", "--device", "cpu:0"), ("trial", "x.yaml", "--params", "{}", "--device", "cuda:x")):
        result = regsearch(*command, timeout=60)
        assert result.returncode == 2 and "--device" in result.stderr and "cuda:N" in result.stderr, command
    sources = [ROOT / "regsearch" / "cli" / "app.py", ROOT / "worker" / "train.py"]
    assert not any("cuda(" in path.read_text() for path in sources), "the pattern lives in regsearch.domain.devices"
