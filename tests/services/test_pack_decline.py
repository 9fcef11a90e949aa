"""The coordinator stops grouping a job's asks by structure once its workers decline its packs
(regsearch.domain.packing: on a CPU, a job that prunes), and says so in its log."""

from __future__ import annotations

import logging

import pytest

from regsearch.config import Settings
from regsearch.domain.spec import validate_spec
from regsearch.services.coordinator import Coordinator
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from tests.services.test_coordinator import Clock, RecordingQueue


def test_packs_are_asked_until_a_cpu_worker_of_a_pruned_job_claims_one(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    spec = validate_spec({"name": "decline", "dataset": {"name": "digits"},
                          "space": {"placement": ["bn-act-drop", "act-drop", "bn-act"]},
                          "budget": {"n_trials": 12, "parallelism": 3, "pack": 3}, "sampler": "random",
                          "pruner": "median", "training": {"epochs": 2}})
    job_id = job_store.create_job(db, spec=spec).job.id
    queue = RecordingQueue()
    coordinator = Coordinator(db, queue, Settings(heartbeat_grace_s=30, resend_after_s=60, prepare_ahead=0),
                              clock=Clock())
    caplog.set_level(logging.INFO, logger="regsearch.coordinator")
    coordinator.tick()
    first = trial_store.job_trials(db, job_id=job_id)
    assert len(first) == 3 and len({r.params["placement"] for r in first}) == 1, "no device known yet: a pack"
    assert "asked one at a time" not in caplog.text

    for row in first:  # a CPU worker trained them (alone: it declined) and pruned them
        claim = trial_store.claim(db, trial_id=row.id, worker="w", device="cpu")
        assert isinstance(claim, trial_store.Claim)
        trial_store.finish(db, trial_id=row.id, lease=claim.lease, state="pruned", metrics=None, error=None)
    coordinator.tick()
    assert "search trials are asked one at a time: packing declined: on cpu" in caplog.text
    assert len(trial_store.job_trials(db, job_id=job_id)) == 6
    assert coordinator._jobs[job_id]._packs_declined()
