"""No configuration is trained twice (issue 18): a search ask that repeats a configuration the job
has in flight, complete or pruned is asked again, and a space with no new one left ends the job.

A real database and the real coordinator; the broker is a recording queue (a process edge) and
trials are "trained" by writing their results the way a worker does (tests.services.test_coordinator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from optuna.trial import TrialState as OptunaTrialState

from regsearch.config import Settings
from regsearch.domain.spec import validate_spec
from regsearch.domain.states import EndReason
from regsearch.services.coordinator import Coordinator
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.models import Trial
from tests.services.test_coordinator import Clock, RecordingQueue, study_of

# Three configurations and no others: the placements' dropout and momentum are fixed.
CATEGORICAL = {"placement": ["act", "bn-act", "act-drop"], "dropout": 0.3, "bn_momentum": 0.1}
# The issue's space: `act` has no continuous parameter, the others do.
ISSUE_SPACE = {"placement": ["bn-act-drop", "drop-bn-act", "act-drop", "bn-act", "act"]}


def make(db: Database, space: dict[str, Any], *, sampler: str = "random", n_trials: int = 10,
         parallelism: int = 2, **extra: Any) -> tuple[Coordinator, RecordingQueue, str]:
    spec = validate_spec({"name": "dup", "dataset": {"name": "digits"}, "space": space,
                          "budget": {"n_trials": n_trials, "parallelism": parallelism}, "sampler": sampler,
                          "pruner": "none", "training": {"epochs": 2, "seed": 3}, **extra})
    job = job_store.create_job(db, spec=spec).job
    queue = RecordingQueue()
    return Coordinator(db, queue, Settings(heartbeat_grace_s=30, resend_after_s=60), clock=Clock()), queue, job.id


def value_of(row: Trial) -> float:
    return {"act": 0.6, "bn-act": 0.8, "act-drop": 0.7}.get(row.params["placement"], 0.5) + (row.seed or 0) / 1000


def drive(db: Database, coordinator: Coordinator, queue: RecordingQueue, job_id: str,
          outcome: Callable[[Trial], str] = lambda row: "complete", max_ticks: int = 200) -> str:
    """Tick, and train each sent trial at once, until the job ends; returns its status."""
    done: set[int] = set()
    for _ in range(max_ticks):
        coordinator.tick()
        job = job_store.get_job(db, job_id=job_id)
        assert job is not None
        if job.status in ("completed", "failed", "cancelled"):
            return job.status
        rows = {r.id: r for r in trial_store.job_trials(db, job_id=job_id)}
        for trial_id in queue.sent:
            if trial_id in done:
                continue
            done.add(trial_id)
            claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
            assert isinstance(claim, trial_store.Claim)
            state, value = outcome(rows[trial_id]), value_of(rows[trial_id])
            metrics = {"val_acc": value} if state == "complete" else None
            trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=state, metrics=metrics,
                               error=None if state == "complete" else "boom")
            if state == "complete":
                study_of(db, job_id).tell(claim.number, value)
            else:
                study_of(db, job_id).tell(claim.number, state=OptunaTrialState.FAIL)
    raise AssertionError("the job did not end")


def search_rows(db: Database, job_id: str) -> list[Trial]:
    return [r for r in trial_store.job_trials(db, job_id=job_id) if r.confirm_of is None]


def configs(rows: list[Trial]) -> list[tuple[tuple[str, Any], ...]]:
    return [tuple(sorted(r.params.items())) for r in rows]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_categorical_space_trains_each_configuration_once_then_ends_exhausted(db: Database, sampler: str) -> None:
    coordinator, queue, job_id = make(db, CATEGORICAL, sampler=sampler, n_trials=10)
    assert drive(db, coordinator, queue, job_id) == "completed"
    rows = search_rows(db, job_id)
    assert sorted(r.params["placement"] for r in rows) == ["act", "act-drop", "bn-act"], "three, each once"
    assert all(r.state == "complete" for r in rows)
    job = job_store.get_job(db, job_id=job_id)
    assert job is not None and job.error == f"{EndReason.SPACE_EXHAUSTED}: 3 distinct configurations"
    assert job.finished_at is not None


def test_optunas_record_holds_no_trial_for_a_rejected_ask(db: Database) -> None:
    coordinator, queue, job_id = make(db, CATEGORICAL, n_trials=10, parallelism=3)
    coordinator.tick()  # three asked (of parallelism 3 + 1 ahead): the space has no fourth
    active = coordinator._jobs[job_id]
    assert active.exhausted == (0, 3) and active.search_over and active.row.status == "running"
    rejected = [t for t in active.mirror.memory.trials if t.state.name == "FAIL"]
    assert rejected, "the sampler was asked again, in memory"
    record = study_of(db, job_id).trials
    assert len(record) == 3 == len(trial_store.job_trials(db, job_id=job_id))
    assert drive(db, coordinator, queue, job_id) == "completed"
    record = study_of(db, job_id).trials
    rows = trial_store.job_trials(db, job_id=job_id)
    assert sorted(t.number for t in record) == sorted(r.number for r in rows) == [0, 1, 2]
    assert [t.state.name for t in record] == ["COMPLETE"] * 3
    assert {t.number: t.params.get("placement") for t in record} == {r.number: r.params["placement"] for r in rows}


def test_a_continuous_space_reaches_its_budget_with_no_configuration_twice(db: Database) -> None:
    coordinator, queue, job_id = make(db, ISSUE_SPACE, n_trials=24)
    assert drive(db, coordinator, queue, job_id) == "completed"
    rows = search_rows(db, job_id)
    assert len(rows) == 24
    assert len(set(configs(rows))) == 24, "no configuration twice"
    assert sum(r.params == {"placement": "act"} for r in rows) == 1, "`act` alone is one configuration"
    job = job_store.get_job(db, job_id=job_id)
    assert job is not None and job.error is None
    assert len(study_of(db, job_id).trials) == 24


def test_confirmation_runs_still_run_and_are_not_duplicates(db: Database) -> None:
    coordinator, queue, job_id = make(db, CATEGORICAL, n_trials=10, confirm={"top_k": 2, "seeds": 2})
    assert drive(db, coordinator, queue, job_id) == "completed"
    rows = trial_store.job_trials(db, job_id=job_id)
    search = {r.number: r for r in rows if r.confirm_of is None}
    confirm = [r for r in rows if r.confirm_of is not None]
    assert len(search) == 3
    leaders = sorted(search.values(), key=value_of, reverse=True)[:2]
    assert sorted((r.confirm_of, r.seed) for r in confirm) == sorted(
        (lead.number, seed) for lead in leaders for seed in (4, 5)), "the top two, with seeds 4 and 5"
    assert all(r.params == search[r.confirm_of].params and r.state == "complete" for r in confirm)  # type: ignore[index]
    job = job_store.get_job(db, job_id=job_id)
    assert job is not None and job.error == f"{EndReason.SPACE_EXHAUSTED}: 3 distinct configurations"
    assert len(study_of(db, job_id).trials) == len(rows) == 7


def test_a_failed_configuration_may_be_tried_again(db: Database) -> None:
    """The space is found exhausted while its three trials are in flight (parallelism 3 + 1
    ahead); one fails (no retry), so its configuration is free again and is asked for once more
    before the job ends."""
    failed: list[str] = []

    def outcome(row: Trial) -> str:
        if not failed:
            failed.append(row.params["placement"])
            return "failed"
        return "complete"

    coordinator, queue, job_id = make(db, CATEGORICAL, n_trials=10, parallelism=3)
    coordinator.tick()
    assert coordinator._jobs[job_id].exhausted == (0, 3)
    assert drive(db, coordinator, queue, job_id, outcome) == "completed"
    rows = search_rows(db, job_id)
    assert [r.state for r in rows].count("failed") == 1 and len(rows) == 4
    assert sorted(r.params["placement"] for r in rows if r.state == "complete") == ["act", "act-drop", "bn-act"]
    assert [r.params["placement"] for r in rows].count(failed[0]) == 2, "the failed one, again"
    job = job_store.get_job(db, job_id=job_id)
    assert job is not None and job.error == f"{EndReason.SPACE_EXHAUSTED}: 3 distinct configurations"


def test_a_restarted_coordinator_finds_the_space_exhausted_again(db: Database) -> None:
    coordinator, queue, job_id = make(db, CATEGORICAL, n_trials=10, parallelism=3)
    coordinator.tick()
    assert coordinator._jobs[job_id].exhausted is not None
    restarted = Coordinator(db, queue, coordinator.settings, clock=Clock())
    assert drive(db, restarted, queue, job_id) == "completed"
    assert len(search_rows(db, job_id)) == 3 == len(study_of(db, job_id).trials)
