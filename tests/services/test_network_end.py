"""A job a worker ended because it cannot run (its data, or its ``auto`` network: both go through
``regsearch.store.job_data.fail_job_for_data``): the coordinator fails its queued trials with one
reason that covers both, and the job with the worker's error."""

from __future__ import annotations

import pytest

from regsearch.domain.states import EndReason
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.job_data import fail_job_for_data
from tests.services.test_duplicates import CATEGORICAL, make

NOT_STARTED = "not started: the job cannot run (its data or its network; see the job's error)"


def test_one_reason_for_the_data_or_the_network() -> None:
    assert EndReason.DATA_UNUSABLE == NOT_STARTED


@pytest.mark.parametrize("error", ["NetworkError: model.network: 'gate': no slot found",
                                   "DatasetError: dataset.path: missing.npz does not exist"])
def test_queued_trials_of_a_job_that_cannot_run_say_why(db: Database, error: str) -> None:
    coordinator, queue, job_id = make(db, CATEGORICAL, n_trials=3, parallelism=2)
    coordinator.tick()
    assert queue.sent, "trials queued"
    assert fail_job_for_data(db, job_id=job_id, reason=error)
    coordinator.tick()
    job = job_store.get_job(db, job_id=job_id)
    assert job is not None and (job.status, job.error) == ("failed", error)
    rows = trial_store.job_trials(db, job_id=job_id)
    assert rows and all((r.state, r.error) == ("failed", NOT_STARTED) for r in rows), [(r.state, r.error) for r in rows]
