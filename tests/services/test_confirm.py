"""Confirmation runs: the coordinator re-runs the leaders with extra seeds; /best ranks by the mean.

A real database and the real coordinator; the broker is a recording queue (a process edge) and
trials are "trained" by writing their results the way a worker does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from regsearch.config import Settings
from regsearch.domain.confirm import confirmation_plan, seed_groups
from regsearch.domain.ranking import rank_by_seed_mean
from regsearch.domain.spec import SpecError, validate_spec
from regsearch.services.api.main import create_app
from regsearch.services.coordinator import Coordinator
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.worker.trial_inputs import run_spec
from tests.services.test_coordinator import Clock, RecordingQueue, study_of

SEARCH_VALUES = [0.60, 0.80, 0.70, 0.75]  # trial 1 leads, then 3, then 2
BASE_SEED = 7


def make(db: Database, **confirm: Any) -> tuple[Coordinator, RecordingQueue, str]:
    spec = validate_spec({
        "name": "confirm", "dataset": {"name": "digits"}, "space": {"placement": ["act", "bn-act", "act-drop"]},
        "training": {"epochs": 3, "seed": BASE_SEED},
        "budget": {"n_trials": len(SEARCH_VALUES), "parallelism": 2}, "sampler": "random", "pruner": "median",
        "confirm": {"top_k": 2, "seeds": 2, **confirm},
    })
    job = job_store.create_job(db, spec=spec).job
    queue = RecordingQueue()
    return Coordinator(db, queue, Settings(heartbeat_grace_s=30, resend_after_s=60), clock=Clock()), queue, job.id


def train(db: Database, job_id: str, trial_id: int, val_acc: float) -> trial_store.Claim:
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert claim is not None
    metrics = {"val_acc": val_acc, "test_acc": val_acc - 0.05, "gap": 0.1}
    trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state="complete", metrics=metrics)
    study_of(db, job_id).tell(claim.number, val_acc)
    return claim


def run_search(db: Database, coordinator: Coordinator, queue: RecordingQueue, job_id: str) -> None:
    """Tick and train until the four search trials are done (their values in trial-number order)."""
    done: set[int] = set()
    while len(done) < len(SEARCH_VALUES):
        coordinator.tick()
        rows = {r.id: r for r in trial_store.job_trials(db, job_id=job_id)}
        for trial_id in queue.sent:
            if trial_id not in done and rows[trial_id].confirm_of is None:
                train(db, job_id, trial_id, SEARCH_VALUES[rows[trial_id].number])
                done.add(trial_id)


def confirm_rows(db: Database, job_id: str) -> list[trial_store.Trial]:
    return [r for r in trial_store.job_trials(db, job_id=job_id) if r.confirm_of is not None]


def test_the_leaders_run_again_with_new_seeds_once_the_search_is_done(db: Database) -> None:
    coordinator, queue, job_id = make(db)
    run_search(db, coordinator, queue, job_id)
    coordinator.tick()
    rows = confirm_rows(db, job_id)
    by_number = {r.number: r for r in trial_store.job_trials(db, job_id=job_id)}
    assert sorted((r.confirm_of, r.seed) for r in rows) == [(1, 8), (1, 9), (3, 8), (3, 9)]
    assert all(r.params == by_number[r.confirm_of].params for r in rows), "the same configuration"
    assert job_store.get_job(db, job_id=job_id).status == "running"  # type: ignore[union-attr]

    frozen = {t.number: t for t in study_of(db, job_id).trials}
    assert {frozen[r.number].user_attrs["regsearch_confirm_of"] for r in rows} == {1, 3}, "marked in Optuna too"

    # A restarted coordinator plans from the rows: nothing is created twice.
    restarted = Coordinator(db, queue, coordinator.settings, clock=coordinator.clock)
    restarted.tick()
    restarted.tick()
    assert len(confirm_rows(db, job_id)) == 4
    sent_confirm = [i for i in queue.sent if i in {r.id for r in rows}]
    assert len(set(sent_confirm)) == 3, "parallelism (2) plus one ahead sent, the fourth waits"

    for value, row in zip([0.70, 0.72, 0.74, 0.76], sorted(rows, key=lambda r: r.number)):
        restarted.tick()
        train(db, job_id, row.id, value)
    restarted.tick()
    restarted.tick()
    assert job_store.get_job(db, job_id=job_id).status == "completed"  # type: ignore[union-attr]
    assert len(confirm_rows(db, job_id)) == 4


def test_a_confirmation_run_trains_with_its_seed_and_is_never_pruned(db: Database) -> None:
    coordinator, queue, job_id = make(db)
    run_search(db, coordinator, queue, job_id)
    coordinator.tick()
    row = confirm_rows(db, job_id)[0]
    claim = trial_store.claim(db, trial_id=row.id, worker="w", device="cpu")
    assert claim is not None and claim.confirm_of == row.confirm_of and claim.seed == row.seed
    spec = run_spec(claim)
    assert spec.training.seed == row.seed and spec.pruner == "none"
    assert spec.dataset == validate_spec(claim.spec).dataset, "the data split is the search's"
    leader = trial_store.job_trials(db, job_id=job_id)[row.confirm_of]
    assert run_spec(trial_store.Claim(**{**claim.__dict__, "seed": None, "confirm_of": None})) == validate_spec(claim.spec)
    assert leader.seed is None, "a search trial trains with the spec's seed"


def test_best_ranks_confirmed_configurations_by_their_seed_mean(sqlite_settings: Settings, db: Database) -> None:
    from fastapi.testclient import TestClient

    coordinator, queue, job_id = make(db)
    run_search(db, coordinator, queue, job_id)
    coordinator.tick()
    coordinator.tick()
    # Trial 1 (0.80) was lucky: its re-runs score 0.62 and 0.64. Trial 3 (0.75) holds up.
    reruns = {(1, 8): 0.62, (1, 9): 0.64, (3, 8): 0.74, (3, 9): 0.76}
    for row in confirm_rows(db, job_id):
        train(db, job_id, row.id, reruns[(row.confirm_of, row.seed)])

    with TestClient(create_app(sqlite_settings, db=db, broker_ping=lambda: None)) as client:
        best = client.get(f"/jobs/{job_id}/best", params={"k": 3}).json()["items"]
        job = client.get(f"/jobs/{job_id}").json()
    assert [item["number"] for item in best] == [3, 1, 2], "3 wins on the mean; 2 was never confirmed"
    assert job["best"]["number"] == 3 and job["n_confirm"] == 4

    top = best[0]["confirmation"]
    values = [0.75, 0.74, 0.76]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    val = top["metrics"]["val_acc"]
    assert top["n"] == 3 and top["seeds"] == [None, 8, 9] and top["numbers"][0] == 3
    assert val["mean"] == pytest.approx(np.mean(values)) and val["std"] == pytest.approx(np.std(values, ddof=1))
    assert (val["low"], val["high"]) == (pytest.approx(low), pytest.approx(high))
    assert best[1]["confirmation"]["metrics"]["val_acc"]["mean"] == pytest.approx(np.mean([0.80, 0.62, 0.64]))
    assert best[1]["metrics"]["val_acc"] == pytest.approx(0.80), "the search run's own metrics stay"
    assert best[2]["confirmation"] is None


def test_no_confirmation_without_the_option_and_a_field_named_on_bad_values() -> None:
    trials = [{"number": n, "state": "complete", "params": {"placement": "act"}, "metrics": {"val_acc": v},
               "confirm_of": None, "seed": None} for n, v in enumerate(SEARCH_VALUES)]
    plan = confirmation_plan(trials, metric="val_acc", direction="minimize", top_k=1, seeds=2, base_seed=0)
    assert [(p.confirm_of, p.seed) for p in plan] == [(0, 1), (0, 2)], "minimize: the smallest leads"
    assert seed_groups(trials) == {}
    reruns = [{"number": n, "state": "complete", "params": {"placement": "act"}, "metrics": {"val_acc": 0.7},
               "confirm_of": 1, "seed": seed} for n, seed in ((7, 2), (6, 1))]
    group = seed_groups([reruns[0], *trials, reruns[1]])[1]
    assert [(t["number"], t["seed"]) for t in group] == [(1, None), (6, 1), (7, 2)], "in trial-number order"
    assert [t["number"] for t, _ in rank_by_seed_mean(trials, metric="val_acc", direction="maximize")] == [1, 3, 2, 0]
    for bad, field in (({"top_k": 0}, "confirm.top_k"), ({"seeds": -1}, "confirm.seeds"), ({"runs": 2}, "confirm.runs")):
        with pytest.raises(SpecError) as excinfo:
            validate_spec({"name": "x", "dataset": {"name": "digits"}, "confirm": bad})
        assert field in str(excinfo.value)
    with pytest.raises(SpecError) as excinfo:
        validate_spec({"name": "x", "dataset": {"name": "digits"}, "pruner": "none", "confirm": {},
                       "objective": {"metrics": ["val_acc", "gap"], "directions": ["maximize", "minimize"]}})
    assert str(excinfo.value).startswith("confirm:")
