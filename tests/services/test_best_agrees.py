"""One ranking everywhere: ``GET /jobs/{id}/best``, ``best`` on ``GET /jobs/{id}`` and on the
``GET /jobs`` items, the CLI's ``best --json``, ``status`` and ``report``, the report's recommendation and the
dashboard's leaders, jobs table and Pareto front agree on the order of a job's configurations.

Real databases (SQLite and PostgreSQL), trials written through the store as workers write them
(no training):

- (a) a confirmed job whose best single seed (trial 1, 0.80, re-run at 0.62 and 0.64) and best
  seed mean (trial 3, 0.75 over 0.75, 0.74, 0.76) disagree, with an unconfirmed trial (4, 0.72)
  above the lucky configuration's mean;
- (b) a two-objective job (val_acc up, gap down) whose non-dominated sorting differs from
  "Pareto front, then by val_acc" (trial 6 is on the third front with the second-best val_acc),
  with an exact val_acc tie (3 and 5) that only the second objective breaks.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from regsearch.client import Client
from regsearch.config import Settings
from regsearch.domain.ranking import objectives_of
from regsearch.services.api.main import create_app
from regsearch.store import trials as store_trials
from regsearch.store.db import Database

BASE = {
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "hidden": [16, 16]},
    "space": {"placement": ["act-drop"], "dropout": {"low": 0.0, "high": 0.6}},
    "training": {"epochs": 3, "seed": 7},
}
CONFIRMED = {**BASE, "name": "confirmed", "budget": {"n_trials": 5}, "confirm": {"top_k": 2, "seeds": 2}}
PARETO = {**BASE, "name": "pareto", "budget": {"n_trials": 7}, "pruner": "none",
          "objective": {"metrics": ["val_acc", "gap"], "directions": ["maximize", "minimize"]}}

SEARCH = {0: 0.60, 1: 0.80, 2: 0.70, 3: 0.75, 4: 0.72}
RERUNS = {5: (1, 8, 0.62), 6: (1, 9, 0.64), 7: (3, 8, 0.74), 8: (3, 9, 0.76)}  # number: (confirm_of, seed, val_acc)
CONFIRMED_ORDER = [3, 1, 4, 2, 0]
POINTS = {0: (0.90, 0.20), 1: (0.85, 0.05), 2: (0.80, 0.30), 3: (0.95, 0.25), 4: (0.87, 0.40), 5: (0.95, 0.15),
          6: (0.94, 0.50)}
PARETO_ORDER = [5, 1, 3, 0, 6, 4, 2]  # fronts: {5, 1}, {3, 0}, {6, 4, 2}


@pytest.fixture
def api(sqlite_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings, db=db, broker_ping=lambda: None)) as client:
        yield client


def complete(db: Database, job_id: str, number: int, metrics: dict[str, float], *, confirm_of: int | None = None,
             seed: int | None = None) -> None:
    """A trial claimed, given its recipe and completed, the way a worker writes it."""
    params = {"placement": "act-drop", "dropout": round(0.05 * (confirm_of if confirm_of is not None else number), 2),
              "dropout_layers": "all"}
    trial_id = store_trials.add_trial(db, job_id=job_id, number=number, optuna_trial_id=number, params=params,
                                      confirm_of=confirm_of, seed=seed)
    claim = store_trials.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert claim is not None
    store_trials.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[], recipe={"blocks": number})
    full = {"test_acc": metrics["val_acc"] - 0.05, "gap": 0.1, "epochs_to_95pct_best": 2, "mean_val_acc": 0.5,
            "seconds_per_epoch": 0.1, **metrics}
    assert store_trials.finish(db, trial_id=trial_id, lease=claim.lease, state="complete", metrics=full)


def make_jobs(api: TestClient, db: Database) -> dict[str, str]:
    jobs = {}
    for spec in (CONFIRMED, PARETO):
        response = api.post("/jobs", json=spec)
        assert response.status_code == 201, response.text
        jobs[spec["name"]] = response.json()["id"]
    for number, value in SEARCH.items():
        complete(db, jobs["confirmed"], number, {"val_acc": value})
    for number, (confirm_of, seed, value) in RERUNS.items():
        complete(db, jobs["confirmed"], number, {"val_acc": value}, confirm_of=confirm_of, seed=seed)
    for number, (value, gap) in POINTS.items():
        complete(db, jobs["pareto"], number, {"val_acc": value, "gap": gap})
    return jobs


class InProcessClient(Client):
    """The CLI's REST client speaking to the test app instead of a socket."""

    def __init__(self, http: TestClient) -> None:
        self._http = http

    def close(self) -> None:
        pass  # the fixture closes the app


def cli(monkeypatch: pytest.MonkeyPatch, api: TestClient, *args: str) -> str:
    """``regsearch ARGS`` against the test API: what it printed (print and the rich console)."""
    from rich.console import Console
    from typer.testing import CliRunner

    from regsearch.cli import app as cli_app

    monkeypatch.setattr(cli_app, "api_client", lambda _settings: InProcessClient(api))
    screen = io.StringIO()
    monkeypatch.setattr(cli_app, "console", Console(file=screen, width=400, color_system=None))
    result = CliRunner().invoke(cli_app.app, list(args))
    assert result.exit_code == 0, (result.output, screen.getvalue())
    return result.stdout + screen.getvalue()


def dashboard_orders(url: str, job_id: str) -> tuple[list[int], int, int | None, set[int]]:
    """The dashboard's leaders (all of them), its jobs table's best, its report's recommendation
    and its Pareto chart's front, from the database the page reads."""
    pytest.importorskip("streamlit")
    from regsearch.dashboard import data, frames

    data.clear_caches()
    info = data.job(url, job_id)
    assert info is not None
    df = data.trials(url, job_id)
    leaders = [int(n) for n in frames.leaders(df, info["objectives"], k=None)["number"]]
    board = frames.leaders(df, info["objectives"], k=3)
    assert [int(n) for n in board["number"]] == leaders[:3] and list(board["rank"]) == [1, 2, 3]
    jobs = data.jobs(url).set_index("id")
    report = data.report(url, job_id)
    assert report is not None
    done = frames.complete(df)
    front = {int(n) for n in done[frames.pareto_front(done, info["objectives"])]["number"]}
    return leaders, int(jobs.loc[job_id, "best"]), report["recommendation"]["number"], front


@pytest.mark.parametrize("name, order", [("confirmed", CONFIRMED_ORDER), ("pareto", PARETO_ORDER)])
def test_every_surface_shows_the_same_ranking(api: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch,
                                              name: str, order: list[int]) -> None:
    jobs = make_jobs(api, db)
    job_id = jobs[name]
    from regsearch.domain.metrics import format_metric

    best = api.get(f"/jobs/{job_id}/best", params={"k": 100}).json()["items"]
    found = {"GET /jobs/{id}/best": [item["number"] for item in best]}
    top_two = api.get(f"/jobs/{job_id}/best", params={"k": 2}).json()["items"]
    found["GET /jobs/{id}/best?k=2, then the rest"] = [item["number"] for item in top_two] + order[2:]
    detail = api.get(f"/jobs/{job_id}").json()
    found["GET /jobs/{id} best"] = [detail["best"]["number"], *order[1:]]
    items = {item["id"]: item for item in api.get("/jobs").json()["items"]}
    found["GET /jobs item best"] = [items[job_id]["best"]["number"], *order[1:]]
    assert items[job_id]["best"] == detail["best"], "the same summary in the list and the detail"
    cli_best = json.loads(cli(monkeypatch, api, "best", job_id, "--top", "100", "--json"))["items"]
    found["regsearch best --json"] = [item["number"] for item in cli_best]
    statuses = {item["id"]: item for item in json.loads(cli(monkeypatch, api, "status", "--json"))["items"]}
    found["regsearch status --json"] = [statuses[job_id]["best"]["number"], *order[1:]]
    report = api.get(f"/jobs/{job_id}/report").json()
    found["report recommendation"] = [report["recommendation"]["number"], *order[1:]]
    cli_report = json.loads(cli(monkeypatch, api, "report", job_id, "--format", "json"))
    found["regsearch report --format json"] = [cli_report["recommendation"]["number"], *order[1:]]
    leaders, jobs_table_best, dashboard_recommendation, front = dashboard_orders(db.url, job_id)
    found["dashboard leaders"] = leaders
    found["dashboard jobs table"] = [jobs_table_best, *order[1:]]
    found["dashboard report"] = [dashboard_recommendation, *order[1:]]

    disagreeing = {surface: numbers for surface, numbers in found.items() if numbers != order}
    assert not disagreeing, f"expected {order} everywhere"

    # What each surface shows of the first configuration is that configuration's.
    first = best[0]
    assert detail["best"] == {"number": first["number"], "params": first["params"],
                              "metrics": {k: v for k, v in first["metrics"].items() if v is not None}}
    status = cli(monkeypatch, api, "status")  # the table shows the best's own val_acc
    row = next(row for row in status.splitlines() if job_id in row)
    assert row.split()[-1] == format_metric("val_acc", first["metrics"]["val_acc"]), status
    if name == "confirmed":
        seeds = first["confirmation"]
        assert seeds["numbers"] == [3, 7, 8] and seeds["metrics"]["val_acc"]["mean"] == pytest.approx(0.75)
        assert [c["number"] for c in report["confirmation"]["configs"]] == [3, 1], "the ranking's confirmed prefix"
        assert report["recommendation"]["basis"] == "confirmed"
        assert max(SEARCH, key=SEARCH.__getitem__) == 1 != order[0], "the best single seed is not the best mean"
    else:
        assert front == {5, 1}
        assert objectives_of(detail["spec"]) == [("val_acc", "maximize"), ("gap", "minimize")]
