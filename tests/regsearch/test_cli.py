"""The CLI: exit codes, messages naming the field, the trial command, and the client commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regsearch.config import Settings
from tests.services.stack import running_stack, small_spec

ROOT = Path(__file__).resolve().parents[2]


def regsearch(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "regsearch", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=ROOT, check=False)  # the tests read the exit status


def write_spec(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(small_spec(**overrides)))
    return path


def test_the_control_plane_never_imports_torch() -> None:
    code = ("import sys, regsearch.services.api.main, regsearch.services.coordinator, regsearch.cli.app, regsearch.client, regsearch.worker.tasks;"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_trial_prints_metrics_curve_recipe_and_layer_order(tmp_path: Path, data_dir: Path) -> None:
    spec = write_spec(tmp_path, training={"epochs": 2})
    params = '{"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1}'
    result = regsearch("trial", str(spec), "--params", params, "--json", env={"REGSEARCH_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert set(doc["metrics"]) >= {"val_acc", "test_acc", "gap", "epochs_to_95pct_best", "mean_val_acc", "seconds_per_epoch"}
    assert doc["layers"][:4] == ["Linear(64->32)", "BatchNorm1d(m=0.1)", "ReLU", "Dropout(p=0.3)"]
    assert doc["recipe"]["slots"][0]["order"] == ["bn", "act", "drop"]
    human = regsearch("trial", str(spec), "--params", params, env={"REGSEARCH_DATA_DIR": str(data_dir)})
    assert human.returncode == 0 and "Layer order" in human.stdout and "Per-epoch curve" in human.stdout


@pytest.mark.parametrize(
    ("params", "needle"),
    [('{"placement": "bn-act-dropp"}', "params.placement"), ('{"placement": "act-drop", "dropout": 1.5}', "params.dropout"),
     ("{not json", "--params"), ('{"placement": "act", "lr": 1}', "lr")],
)
def test_trial_bad_params_exit_2_naming_the_field(tmp_path: Path, params: str, needle: str) -> None:
    result = regsearch("trial", str(write_spec(tmp_path)), "--params", params)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_bad_spec_files_exit_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: {name: digits}\nspace: {dropout: {low: 0.6, high: 0.1}}\n")
    for args in (("trial", str(bad), "--params", "{}"), ("submit", str(bad))):
        result = regsearch(*args)
        assert result.returncode == 2 and "space.dropout" in result.stderr and "Traceback" not in result.stderr
    missing = regsearch("submit", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_api_refuses_a_public_bind_without_a_token() -> None:
    result = regsearch("api", "--host", "0.0.0.0", env={"REGSEARCH_API_TOKEN": ""}, timeout=60)
    assert result.returncode == 2 and "token" in result.stderr.lower()


def test_worker_refuses_an_unknown_device() -> None:
    result = regsearch("worker", "--device", "tpu", timeout=60)
    assert result.returncode == 2 and "--device" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_submit_wait_status_best_cancel_through_the_api(tmp_path: Path, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)
    with running_stack(settings, tmp_path / "logs") as stack:
        env = {"REGSEARCH_API_URL": stack.settings.api_url, "REGSEARCH_DATA_DIR": str(data_dir)}
        spec = write_spec(tmp_path, budget={"n_trials": 3})
        submitted = regsearch("submit", str(spec), "--wait", env=env)
        assert submitted.returncode == 0, submitted.stderr + stack.logs()
        job_id = submitted.stdout.split()[0]
        assert "Best configurations" in submitted.stdout and "completed" in submitted.stdout
        status = regsearch("status", job_id, env=env)
        assert status.returncode == 0 and "completed" in status.stdout and "3/3" in status.stdout
        best = regsearch("best", job_id, "--top", "2", "--json", env=env)
        items = json.loads(best.stdout)["items"]
        assert best.returncode == 0 and 1 <= len(items) <= 2 and items[0]["recipe"]
        unknown = regsearch("cancel", "nosuchjob", env=env)
        assert unknown.returncode == 2 and "not found" in unknown.stderr
    down = regsearch("status", env={"REGSEARCH_API_URL": "http://127.0.0.1:9"})
    assert down.returncode == 1 and "cannot reach the API" in down.stderr


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_up_starts_everything_and_a_signal_stops_it_all(data_dir: Path, sig: str) -> None:
    import signal
    import time

    import httpx

    from regsearch.cli.launcher import free_port

    api_port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "REGSEARCH_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    up = subprocess.Popen([sys.executable, "-m", "regsearch", "up", "--workers", "1", "--api-port", str(api_port),
                           "--dashboard-port", str(dashboard_port)], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = (httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=1).status_code == 200
                         and httpx.get(f"http://127.0.0.1:{dashboard_port}/", timeout=1).status_code == 200)
            except httpx.HTTPError:
                time.sleep(0.5)
        assert ready, "the API and the dashboard should answer"
        children = subprocess.run(["pgrep", "-f", "--", f"--port {api_port}|--port {dashboard_port}|regsearch (coordinator|worker)"],
                                  capture_output=True, text=True, check=False).stdout.split()
        assert len(children) >= 4
        up.send_signal(getattr(signal, sig))
        up.wait(60)
        time.sleep(1)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
                 and "regsearch" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
                 and str(data_dir) in Path(f"/proc/{pid}/environ").read_text(errors="replace")]
        assert alive == [], "every component stops with `regsearch up`"
    finally:
        if up.poll() is None:  # a failed assertion: let `up` stop its children before going
            up.terminate()
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()


def test_the_best_table_shows_the_spread_over_seeds_of_confirmed_configurations() -> None:
    from rich.console import Console

    from regsearch.cli.tables import print_best

    confirmed = {"n": 3, "numbers": [3, 9, 10], "seeds": [None, 1, 2], "metrics": {
        "val_acc": {"n": 3, "mean": 0.75, "std": 0.0035, "low": 0.741, "high": 0.759},
        "test_acc": {"n": 3, "mean": 0.7, "std": None, "low": None, "high": None}}}
    items = [
        {"number": 3, "params": {"placement": "bn-act-drop", "dropout": 0.2, "bn_momentum": 0.1}, "recipe": None,
         "metrics": {"val_acc": 0.76, "test_acc": 0.71}, "confirmation": confirmed},
        {"number": 1, "params": {"placement": "act"}, "recipe": None, "metrics": {"val_acc": 0.7}, "confirmation": None},
    ]
    console = Console(width=220, record=True)
    print_best(console, items)
    text = console.export_text()
    assert "a confirmed one: mean over its runs" in text and "0.750 [0.741, 0.759]" in text
    plain = Console(width=220, record=True)
    print_best(plain, [dict(items[1])])
    assert "runs" not in plain.export_text(), "no seed columns without confirmation runs"


def test_the_demo_comparison_is_the_reports_placement_ranking() -> None:
    from rich.console import Console

    from regsearch.cli.tables import comparison_table
    from regsearch.evidence import build_report

    spec = {"name": "c", "dataset": {"name": "digits"}, "space": {"placement": ["bn-act", "act-drop"]}}
    values = {"bn-act": [0.70, 0.72, 0.74], "act-drop": [0.60, 0.62]}
    trials = [{"number": n, "state": "complete", "params": {"placement": p, "dropout": 0.1 * (i + 1)} if p == "act-drop"
               else {"placement": p, "bn_momentum": 0.1 * (i + 1)},
               "metrics": {"val_acc": v, "test_acc": v, "gap": 0.1, "epochs_to_95pct_best": 3}, "seed": None, "confirm_of": None}
              for n, (p, i, v) in enumerate((p, i, v) for p, vs in values.items() for i, v in enumerate(vs))]
    document = build_report(spec, trials, job_id="j", status="completed").model_dump(mode="json")
    console = Console(width=200, record=True)
    console.print(comparison_table(document))
    lines = [line for line in console.export_text().splitlines() if "bn-act" in line or "act-drop" in line]
    assert [line.split()[1] for line in lines] == ["bn-act", "act-drop"], "ranked by mean val_acc"
    assert "0.720 [0.670, 0.770]" in lines[0] and lines[0].split()[3] == "3", "the mean with its interval; three done"
