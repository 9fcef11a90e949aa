"""Packed trials on a worker (``regsearch.worker.pack_runner``): the real coordinator asks and
sends (to a recording queue: the broker is a process edge), the worker's ``run_trial`` claims
one and its companions, trains them as one pack, and each member ends as a lone trial ends."""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
import pytest
from sqlalchemy import func, select, update

from regsearch.config import Settings
from regsearch.domain.spec import validate_spec
from regsearch.domain.states import TrialState
from regsearch.services.coordinator import Coordinator
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.models import Epoch, Trial
from regsearch.worker import runner
from tests.services.test_coordinator import Clock, RecordingQueue, study_of

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/worker/conftest.py


def _job(db: Database, settings: Settings, *, pack: int, placements: list[str], epochs: int = 3,
         n_trials: int = 4) -> tuple[Coordinator, RecordingQueue, str]:
    spec = validate_spec({
        "name": "pack", "dataset": {"name": "digits"}, "model": {"family": "mlp", "hidden": [32, 32]},
        "space": {"placement": placements, "dropout": {"low": 0.1, "high": 0.5}},
        "training": {"epochs": epochs, "batch_size": 64},
        "budget": {"n_trials": n_trials, "parallelism": n_trials, "pack": pack}, "sampler": "random", "pruner": "none",
    })
    job = job_store.create_job(db, spec=spec).job
    queue = RecordingQueue()
    fast = settings.model_copy(update={"heartbeat_grace_s": 30, "resend_after_s": 60, "prepare_ahead": 0})
    return Coordinator(db, queue, fast, clock=Clock()), queue, job.id


def _rows(db: Database, job_id: str) -> dict[int, Trial]:
    return {r.id: r for r in trial_store.job_trials(db, job_id=job_id)}


def _epochs(db: Database, trial_id: int) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Epoch).where(Epoch.trial_id == trial_id)) or 0)


def test_a_claimed_trial_trains_with_its_companions_and_each_ends_on_its_own(
    sqlite_db: Database, sqlite_settings: Settings
) -> None:
    coordinator, queue, job_id = _job(sqlite_db, sqlite_settings, pack=4, placements=["bn-act-drop"])
    coordinator.tick()
    assert len(queue.sent) == 4
    outcome = runner.run_trial(queue.sent[0], sqlite_settings, "cpu")
    assert sorted(outcome["pack"]) == sorted(queue.sent), "one pack of the four queued trials"
    rows = _rows(sqlite_db, job_id)
    assert {r.state for r in rows.values()} == {TrialState.COMPLETE}
    assert len({r.params["dropout"] for r in rows.values()}) == 4, "each member its own dropout rate"
    assert len({r.lease for r in rows.values()}) == 4, "each member its own lease"
    for row in rows.values():
        assert _epochs(sqlite_db, row.id) == 3 and row.recipe is not None and row.metrics["val_acc"] > 0
    record = {t.number: t for t in study_of(sqlite_db, job_id).trials}
    for row in rows.values():
        frozen = record[row.number]
        assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.value == row.metrics["val_acc"]
    # The companions' own messages arrive later: acknowledged as duplicates, nothing trained twice.
    assert runner.run_trial(queue.sent[1], sqlite_settings, "cpu")["outcome"] == "duplicate"


def test_only_trials_of_the_same_structure_join_a_pack(sqlite_db: Database, sqlite_settings: Settings) -> None:
    coordinator, queue, job_id = _job(sqlite_db, sqlite_settings, pack=8, placements=["bn-act-drop", "act"],
                                      n_trials=6, epochs=1)
    coordinator.tick()
    rows = _rows(sqlite_db, job_id)
    first = queue.sent[0]
    outcome = runner.run_trial(first, sqlite_settings, "cpu")
    same = {i for i, r in rows.items() if r.params["placement"] == rows[first].params["placement"]}
    if len(same) > 1:
        assert set(outcome["pack"]) == same
    else:
        assert "pack" not in outcome, "alone: no companion of its structure"
    after = _rows(sqlite_db, job_id)
    assert all(after[i].state == TrialState.QUEUED for i in set(rows) - same)


def test_a_member_that_loses_its_lease_stops_alone(sqlite_db: Database, sqlite_settings: Settings) -> None:
    settings = sqlite_settings.model_copy(update={"heartbeat_interval_s": 0.05})
    coordinator, queue, job_id = _job(sqlite_db, settings, pack=3, placements=["bn-act-drop"], n_trials=3, epochs=40)
    coordinator.tick()
    victim = queue.sent[1]
    when_victim_ended: dict[int, Any] = {}  # the others' states the moment the victim's result is written

    def reassign() -> None:  # what the reaper and a new claim do to a trial presumed dead
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sqlite_db.read() as session:
                running = session.scalar(select(Trial.state).where(Trial.id == victim))
            if running == TrialState.RUNNING:
                time.sleep(0.3)  # a few epochs in
                with sqlite_db.session() as session:
                    session.execute(update(Trial).where(Trial.id == victim).values(lease="someone-else"))
                break
            time.sleep(0.01)
        while time.monotonic() < deadline:
            rows = _rows(sqlite_db, job_id)
            if rows[victim].superseded_result is not None:
                when_victim_ended.update({i: rows[i].state for i in queue.sent if i != victim})
                return
            time.sleep(0.01)

    thread = threading.Thread(target=reassign)
    thread.start()
    outcome = runner.run_trial(queue.sent[0], settings, "cpu")
    thread.join()
    assert sorted(outcome["pack"]) == sorted(queue.sent)
    rows = _rows(sqlite_db, job_id)
    lost: dict[str, Any] = rows[victim].superseded_result
    assert lost is not None and lost["state"] == TrialState.FAILED and "lease" in lost["error"], lost
    others = [rows[i] for i in queue.sent if i != victim]
    assert all(r.state == TrialState.COMPLETE for r in others)
    assert all(_epochs(sqlite_db, r.id) == 40 for r in others), "the others trained to the end"
    # it ended at the epoch it left, not when the pack finished
    assert set(when_victim_ended.values()) == {TrialState.RUNNING}, when_victim_ended


def test_pack_one_trains_alone(sqlite_db: Database, sqlite_settings: Settings) -> None:
    coordinator, queue, _ = _job(sqlite_db, sqlite_settings, pack=1, placements=["bn-act-drop"], epochs=1)
    coordinator.tick()
    assert "pack" not in runner.run_trial(queue.sent[0], sqlite_settings, "cpu")


def test_the_coordinator_asks_a_packs_trials_with_one_structure(sqlite_db: Database, sqlite_settings: Settings) -> None:
    coordinator, queue, job_id = _job(sqlite_db, sqlite_settings, pack=3, placements=["bn-act-drop", "act-drop", "act"],
                                      n_trials=3)
    coordinator.tick()
    rows = _rows(sqlite_db, job_id)
    assert len(queue.sent) == 3
    placements = {rows[i].params["placement"] for i in queue.sent}
    assert len(placements) == 1, placements
    if "drop" in placements.pop():
        assert len({rows[i].params["dropout"] for i in queue.sent}) == 3, "the sampler chose each dropout"
    record = study_of(sqlite_db, job_id).trials
    assert sorted(t.number for t in record) == sorted(r.number for r in rows.values()), "nothing else in the record"
