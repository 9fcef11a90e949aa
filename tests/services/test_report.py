"""``GET /jobs/{id}/report``, ``regsearch report`` and a real placement study on mnist1d.

The API tests fill trial rows through ``regsearch.store.trials`` as a worker would, on SQLite
and PostgreSQL; every expected number is computed here with numpy and scipy from the trials the
API lists, never with the report's own code.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from regsearch.config import Settings
from regsearch.domain.metrics import SHOWN_METRICS
from regsearch.services.api.main import create_app
from regsearch.store import trials as store_trials
from regsearch.store.db import Database
from regsearch.store.jobs import set_job_status
from regsearch.store.models import Trial
from tests.regsearch.test_evidence import (
    expected,  # numpy + scipy, independent of regsearch.domain.stats
)
from tests.services.stack import running_stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "report-token-0123456789abcdef"
SPEC: dict[str, Any] = {
    "name": "report-test",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "hidden": [16, 16]},
    "space": {"placement": ["bn-act-drop", "act-drop", "act"], "dropout": {"low": 0.0, "high": 0.5}},
    "training": {"epochs": 3, "batch_size": 32, "lr": 0.01, "seed": 3},
    "budget": {"n_trials": 12, "parallelism": 2},
    "confirm": {"top_k": 1, "seeds": 2},
}


# -- independent arithmetic -----------------------------------------------------------------


def assert_stat(got: dict[str, Any], values: list[float], metric: str = "val_acc") -> None:
    want = expected(values, metric)
    if metric == "epochs_to_95pct_best":  # at most the epochs the trials ran (3)
        want.update({k: min(want[k], 3.0) for k in ("low", "high") if want[k] is not None})
    assert got["n"] == want["n"]
    for key in ("mean", "std", "low", "high"):
        if want[key] is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key


def finite_values(trials: list[dict[str, Any]], metric: str) -> list[float]:
    values = [(t["metrics"] or {}).get(metric) for t in trials]
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def observations(trials: list[dict[str, Any]], metric: str) -> list[float]:
    """One value per distinct (params, seed): the mean over its repeats (the report's rule)."""
    repeats: dict[str, list[float]] = {}
    for trial in trials:
        key = json.dumps([trial["params"], trial["seed"]], sort_keys=True)
        repeats.setdefault(key, []).extend(finite_values([trial], metric))
    return [float(np.mean(values)) for values in repeats.values() if values]


def assert_report_matches_trials(report: dict[str, Any], trials: list[dict[str, Any]]) -> None:
    """Every placement group's counts and statistics, recomputed from the raw trial items."""
    search = [t for t in trials if t["role"] == "search"]
    placements = next(g for g in report["groupings"] if g["by"] == "placement")
    seen = set()
    for group in placements["groups"]:
        members = [t for t in search if t["params"]["placement"] == group["key"]]
        done = [t for t in members if t["state"] == "complete"]
        assert group["n_complete"] == len(done), group["key"]
        assert group["n_pruned"] == sum(t["state"] == "pruned" for t in members)
        assert group["n_distinct"] == len({json.dumps([t["params"], t["seed"]], sort_keys=True) for t in done})
        for metric in SHOWN_METRICS:
            assert_stat(group["metrics"][metric], observations(done, metric), metric)
        seen.add(group["key"])
    assert {t["params"]["placement"] for t in search} <= seen
    ranked = [g for g in placements["groups"] if g["rank"] is not None]
    means = [g["metrics"][report["metric"]]["mean"] for g in ranked]
    assert means == sorted(means, reverse=report["direction"] == "maximize")
    assert [g["rank"] for g in ranked] == list(range(1, len(ranked) + 1))


# -- the API ---------------------------------------------------------------------------------
def make_client(settings: Settings, db: Database) -> TestClient:
    return TestClient(create_app(settings, db=db, broker_ping=lambda: None))


@pytest.fixture
def client(sqlite_settings: Settings, db: Database) -> Iterator[TestClient]:
    with make_client(sqlite_settings, db) as test_client:
        yield test_client


def submit(client: TestClient, spec: dict[str, Any] | None = None) -> str:
    response = client.post("/jobs", json=spec or SPEC)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def add_trial(db: Database, job_id: str, number: int, params: dict[str, Any], state: str = "complete",
              metrics: dict[str, Any] | None = None, *, confirm_of: int | None = None, seed: int | None = None,
              retried: bool = False, recipe: dict[str, Any] | None = None) -> int:
    """A trial row taken through the worker's lifecycle up to ``state``."""
    trial_id = store_trials.add_trial(db, job_id=job_id, number=number, optuna_trial_id=number, params=params)
    if confirm_of is not None or seed is not None:
        with db.session() as session:
            session.execute(update(Trial).where(Trial.id == trial_id).values(confirm_of=confirm_of, seed=seed))
    if state == "queued":
        return trial_id
    claim = store_trials.claim(db, trial_id=trial_id, worker="host-a", device="cpu")
    assert claim is not None
    if state != "running":
        store_trials.finish(db, trial_id=trial_id, lease=claim.lease, state=state, metrics=metrics,
                            error="boom" if state == "failed" else None, recipe=recipe)
    if retried:
        assert store_trials.mark_retried(db, trial_id=trial_id)
    return trial_id


def summary(number: int, val: float) -> dict[str, Any]:
    return {"val_acc": val, "test_acc": val - 0.03, "gap": 0.05 + number / 200, "epochs_to_95pct_best": 2 + number % 3,
            "seconds_per_epoch": 0.1 + number / 100, "mean_val_acc": val - 0.1, "epochs_run": 3}


def fill(db: Database, job_id: str) -> None:
    """Search trials over three placements (complete, pruned, failed, retried, running) and the
    leader's two confirmation runs."""
    plan = [("bn-act-drop", 0.2, 0.81), ("bn-act-drop", 0.35, 0.84), ("bn-act-drop", 0.05, 0.80),
            ("act-drop", 0.1, 0.74), ("act-drop", 0.45, 0.78), ("act-drop", 0.3, 0.71), ("act", None, 0.65)]
    for number, (placement, dropout, val) in enumerate(plan):
        params: dict[str, Any] = {"placement": placement}
        if dropout is not None:
            params.update(dropout=dropout, dropout_layers="all")
        if "bn" in placement:
            params.update(bn_momentum=0.1, bn_layers="all")
        add_trial(db, job_id, number, params, metrics=summary(number, val))
    add_trial(db, job_id, 7, {"placement": "act"}, "pruned", {"val_acc": 0.2})
    add_trial(db, job_id, 8, {"placement": "act-drop", "dropout": 0.4, "dropout_layers": "all"}, "failed",
              retried=True)
    add_trial(db, job_id, 9, {"placement": "act-drop", "dropout": 0.4, "dropout_layers": "all"},
              metrics=summary(9, math.nan))  # a diverged trial: val_acc is stored as null
    add_trial(db, job_id, 10, {"placement": "act"}, "running")
    leader = {"placement": "bn-act-drop", "dropout": 0.35, "dropout_layers": "all", "bn_momentum": 0.1,
              "bn_layers": "all"}
    add_trial(db, job_id, 11, leader, metrics=summary(11, 0.82), confirm_of=1, seed=4)
    add_trial(db, job_id, 12, leader, metrics=summary(12, 0.83), confirm_of=1, seed=5)


def test_report_of_a_running_job_matches_its_trials(client: TestClient, db: Database) -> None:
    job_id = submit(client)
    fill(db, job_id)
    set_job_status(db, job_id=job_id, status="running")
    response = client.get(f"/jobs/{job_id}/report")
    assert response.status_code == 200, response.text
    report = response.json()
    trials = client.get(f"/jobs/{job_id}/trials", params={"limit": 100}).json()["items"]
    assert (report["job_id"], report["name"], report["status"]) == (job_id, "report-test", "running")
    assert_report_matches_trials(report, trials)
    placements = {g["key"]: g for g in report["groupings"][0]["groups"]}
    assert [g["key"] for g in report["groupings"][0]["groups"]] == ["bn-act-drop", "act-drop", "act"]
    assert placements["act-drop"]["n_failed"] == 0  # the retried attempt is not counted
    assert placements["act-drop"]["n_complete"] == 4 and placements["act-drop"]["metrics"]["val_acc"]["n"] == 3
    assert placements["act"]["n_active"] == 1 and placements["act"]["n_pruned"] == 1
    assert report["counts"]["confirm"]["complete"] == 2
    [config] = report["confirmation"]["configs"]
    assert config["number"] == 1 and config["numbers"] == [1, 11, 12] and config["seeds"] == [3, 4, 5]
    assert_stat(config["metrics"]["val_acc"], [0.84, 0.82, 0.83])
    # act has one complete configuration: below the minimum the report says what is missing instead
    # of recommending, and names the ranking's first (the confirmed #1) as the best so far
    recommendation = report["recommendation"]
    assert recommendation["basis"] == "none" and recommendation["decided_by"] == "insufficient"
    assert recommendation["number"] is None and recommendation["missing"] == {"act": 2}
    assert "act has 1" in recommendation["sentence"] and "#1 (bn-act-drop" in recommendation["sentence"]
    codes = {w["code"] for w in report["warnings"]}
    assert {"partial", "within_noise"} <= codes
    bands = {g["label"]: g["n_trials"] for g in report["groupings"][1]["groups"]}
    assert bands == {"[0.0, 0.1)": 1, "[0.1, 0.2)": 1, "[0.2, 0.3)": 1, "[0.3, 0.4)": 2, "[0.4, 0.5)": 2,
                     "no dropout": 3}


def test_report_of_a_job_without_complete_trials(client: TestClient, db: Database) -> None:
    job_id = submit(client)
    empty = client.get(f"/jobs/{job_id}/report")
    assert empty.status_code == 200
    report = empty.json()
    assert report["recommendation"]["basis"] == "none" and report["comparison"] is None
    assert [g["n_trials"] for g in report["groupings"][0]["groups"]] == [0, 0, 0]
    assert {w["code"] for w in report["warnings"]} == {"no_complete_trials", "partial"}  # queued job
    add_trial(db, job_id, 0, {"placement": "act"}, "failed")
    add_trial(db, job_id, 1, {"placement": "act"}, "pruned")
    set_job_status(db, job_id=job_id, status="failed", error="everything failed")
    report = client.get(f"/jobs/{job_id}/report").json()
    assert report["status"] == "failed"
    assert {w["code"] for w in report["warnings"]} == {"no_complete_trials", "pruned_left_out"}


AUTO_SLOTS = "Slots (3, by layer name): 0 `conv1`, 1 `features.3`, 2 `slot 2`."


def test_the_report_of_an_auto_job_names_its_slots_by_layer(client: TestClient, db: Database,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from regsearch.cli.app import app
    from regsearch.client import Client

    job_id = submit(client, {**SPEC, "model": {"family": "auto", "network": "vgg_seq"}})
    recipe = {"version": 2, "family": "auto", "slots": [{"order": ["bn", "act"], "name": "conv1"},
                                                        {"order": ["act"], "name": "features.3"}, {"order": ["act"]}]}
    add_trial(db, job_id, 0, {"placement": "act"}, "failed")  # no recipe: the complete trial's is read
    add_trial(db, job_id, 1, {"placement": "act"}, metrics=summary(1, 0.7), recipe=recipe)
    report = client.get(f"/jobs/{job_id}/report").json()
    assert (report["family"], report["slots"]) == ("auto", ["conv1", "features.3", "slot 2"])
    monkeypatch.setattr(Client, "report", lambda self, job: report)
    shown = CliRunner().invoke(app, ["report", job_id])  # not a terminal: plain Markdown
    assert shown.exit_code == 0, shown.output
    assert AUTO_SLOTS in shown.output
    mlp = submit(client)  # a family without layer names: no slots line
    add_trial(db, mlp, 0, {"placement": "act"}, metrics=summary(0, 0.7), recipe={"slots": [{"order": ["act"]}]})
    assert client.get(f"/jobs/{mlp}/report").json()["slots"] is None


def test_unknown_job_is_404(client: TestClient) -> None:
    for job_id in ("nosuchjob", "bad%20id", "x" * 100):
        response = client.get(f"/jobs/{job_id}/report")
        assert response.status_code == 404 and "not found" in response.json()["detail"]


def test_report_needs_the_token_when_one_is_set(sqlite_settings: Settings, sqlite_db: Database) -> None:
    settings = sqlite_settings.model_copy(update={"api_token": TOKEN})
    with make_client(settings, sqlite_db) as secured:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        response = secured.post("/jobs", json=SPEC, headers=auth)
        job_id = response.json()["id"]
        assert secured.get(f"/jobs/{job_id}/report").status_code == 401
        assert secured.get(f"/jobs/{job_id}/report", headers=auth).status_code == 200
        schema = secured.get("/openapi.json", headers=auth).json()
        assert "ReportPublic" in json.dumps(schema["paths"]["/jobs/{job_id}/report"])


# -- the CLI ---------------------------------------------------------------------------------
def regsearch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regsearch", *args], check=False, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, cwd=ROOT)


@pytest.mark.timeout(180)
def test_the_report_command(embedded_settings: Settings, tmp_path: Path) -> None:
    with running_stack(embedded_settings, tmp_path / "logs", start=False) as stack:
        stack.start("api")
        job_id = stack.client.submit(SPEC)["id"]
        fill(stack.db, job_id)
        env = {"REGSEARCH_API_URL": stack.settings.api_url, "REGSEARCH_DATA_DIR": str(embedded_settings.data_dir)}
        as_json = regsearch("report", job_id, "--format", "json", env=env)
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout) == stack.client.report(job_id)
        markdown = regsearch("report", job_id, env=env)  # md by default; a pipe gets plain Markdown
        assert markdown.returncode == 0, markdown.stderr
        assert markdown.stdout.startswith(f"## Report: report-test (job `{job_id}`, queued)")
        assert "| 1 | bn-act-drop | 3 | 3 | 0 | 0 |" in markdown.stdout
        assert "**Recommendation.** No recommendation yet: each placement needs at least 3" in markdown.stdout
        bad = regsearch("report", job_id, "--format", "xml", env=env)
        assert bad.returncode == 2 and "--format" in bad.stderr and "Traceback" not in bad.stderr
        unknown = regsearch("report", "nosuchjob", env=env)
        assert unknown.returncode == 2 and "not found" in unknown.stderr and "Traceback" not in unknown.stderr
    down = regsearch("report", "abc", env={"REGSEARCH_API_URL": "http://127.0.0.1:9"})
    assert down.returncode == 1 and "cannot reach the API" in down.stderr


# -- a real placement study (the item 4) ---------------------------------------------
PLACEMENT_STUDY: dict[str, Any] = {
    "name": "mnist1d-placement-small",
    "dataset": {"name": "mnist1d"},
    "model": {"family": "mlp", "hidden": [64, 64]},
    "space": {"placement": ["bn-act-drop", "act-drop", "bn-act"], "dropout": [0.1, 0.3], "bn_momentum": 0.1},
    "training": {"epochs": 3, "batch_size": 128, "lr": 0.003, "seed": 0},
    "budget": {"n_trials": 6, "parallelism": 2},
    "sampler": "random",
    "pruner": "none",
    "confirm": {"top_k": 1, "seeds": 2},
}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_small_placement_study_on_mnist1d_reports_its_own_arithmetic(embedded_settings: Settings,
                                                                         tmp_path: Path) -> None:
    with running_stack(embedded_settings, tmp_path / "logs") as stack:
        job_id = stack.client.submit(PLACEMENT_STUDY)["id"]
        done = stack.wait_job(job_id, timeout_s=240)
        assert done["status"] == "completed", stack.logs()
        trials = stack.client.all_trials(job_id)
        report = stack.client.report(job_id)
    search = [t for t in trials if t["role"] == "search"]
    # Five distinct configurations (two dropout rates for each dropout placement, and bn-act):
    # the sixth search trial would train one of them again, so the job ends with the five.
    assert len(search) == 5 and all(t["state"] == "complete" for t in search), trials
    assert len({json.dumps(t["params"], sort_keys=True) for t in search}) == 5
    assert done["error"] == "search space exhausted: 5 distinct configurations", done
    assert report["status"] == "completed" and report["counts"]["search"]["complete"] == 5
    assert_report_matches_trials(report, trials)
    bands = {g["label"]: g for g in report["groupings"][1]["groups"]}
    for label, rate in (("[0.1, 0.2)", 0.1), ("[0.3, 0.4)", 0.3)):
        members = [t for t in search if t["params"].get("dropout") == rate]
        if members:
            assert_stat(bands[label]["metrics"]["val_acc"], observations(members, "val_acc"))
    no_dropout = [t for t in search if "dropout" not in t["params"]]
    if no_dropout:
        assert_stat(bands["no dropout"]["metrics"]["test_acc"], observations(no_dropout, "test_acc"))
    confirm_runs = [t for t in trials if t["role"] == "confirm"]
    for config in report["confirmation"]["configs"]:
        group = [t for t in trials if t["number"] == config["number"]]
        group += [t for t in confirm_runs if t["confirm_of"] == config["number"] and t["state"] == "complete"]
        assert config["numbers"] == [t["number"] for t in group]
        assert_stat(config["metrics"]["val_acc"], finite_values(group, "val_acc"))
    if confirm_runs:  # the coordinator re-ran the leader with seeds 1 and 2
        assert sorted(t["seed"] for t in confirm_runs) == [1, 2]
    # five configurations over three placements: no placement has the 3 distinct configurations a
    # comparison needs, so the report says what is missing and names the ranking's first as the best so far
    recommended = report["recommendation"]
    assert recommended["basis"] == "none" and recommended["decided_by"] == "insufficient"
    assert set(recommended["missing"]) == set(PLACEMENT_STUDY["space"]["placement"])
    from regsearch.domain.ranking import rank_configurations

    first = rank_configurations(trials, [("val_acc", "maximize")])[0]
    assert f"The best so far, #{first.number} (" in recommended["sentence"]
