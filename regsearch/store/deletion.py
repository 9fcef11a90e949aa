"""Deleting a job: its rows, its Optuna study and its kept weights, in one function.

:func:`delete_job` is the one way a job is deleted; ``DELETE /jobs/{id}`` and the dashboard's
delete button both call it. A queued or running job is refused (:class:`JobActive`): its
coordinator and workers would go on writing to rows that are gone, so it must be cancelled
first.

The order makes a failure halfway safe to retry: the weights files first, then the Optuna study,
then the rows (one transaction, under the job row's lock). Until the last step the job is still
listed, so a delete that failed (artifact store or database unreachable) is simply asked again;
each step finds what an earlier attempt already removed gone and goes on.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import delete, select

from regsearch.domain.states import ACTIVE_JOB_STATES, WeightsState
from regsearch.store import studies
from regsearch.store.artifacts import ArtifactStore, LocalArtifactStore, weights_key
from regsearch.store.db import Database, StoreUnavailable
from regsearch.store.models import Epoch, Job, RungValue, StepValue, Trial
from regsearch.store.retry import is_transient

__all__ = ["JobActive", "JobNotFound", "delete_job"]

log = logging.getLogger("regsearch.store")


class JobNotFound(LookupError):
    """No job has this id."""


class JobActive(RuntimeError):
    """The job is queued or running: it must be cancelled (and have stopped) before it is deleted."""


def _active_message(job_id: str, status: str) -> str:
    return (f"job {job_id!r} is {status}: cancel it first (regsearch cancel {job_id}), "
            "then delete it once it has stopped")


def _check_deletable(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise JobNotFound(f"job {job_id!r} not found")
    if job.status in ACTIVE_JOB_STATES:
        raise JobActive(_active_message(job_id, job.status))
    return job


def delete_job(db: Database, artifacts: ArtifactStore, job_id: str) -> None:
    """Delete job ``job_id``: weights files, Optuna study, trials, epochs, pruner values, the job.

    Raises :class:`JobNotFound`, :class:`JobActive` (queued or running), ``StoreUnavailable`` and
    the artifact store's ``ArtifactStoreUnavailable`` (nothing of the job's rows is deleted then).
    """
    with db.read() as session:
        job = _check_deletable(session.get(Job, job_id), job_id)
        study_name = job.study_name
        # Evicted weights were deleted by the worker's sweep; every other saved state may have a file.
        numbers = list(session.scalars(
            select(Trial.number).where(Trial.job_id == job_id, Trial.weights.is_not(None),
                                       Trial.weights != WeightsState.EVICTED)).all())
    for number in numbers:
        artifacts.delete(weights_key(job_id, number))  # a missing file is not an error
    if isinstance(artifacts, LocalArtifactStore):
        with contextlib.suppress(OSError):  # the job's folder, when empty (best effort)
            (artifacts.root / job_id).rmdir()
    try:
        studies.delete_study(db.url, study_name)
    except Exception as exc:
        if is_transient(exc):  # Optuna wraps the driver's error
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        raise
    with db.session() as session:
        # Re-read under the row's lock: nothing may have re-queued it meanwhile.
        _check_deletable(session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first(), job_id)
        trial_ids = select(Trial.id).where(Trial.job_id == job_id).scalar_subquery()
        # Explicit deletes rather than ON DELETE CASCADE: it needs SQLite's foreign_keys pragma
        # on every connection that ever deletes, and says nothing to a reader of this function.
        session.execute(delete(Epoch).where(Epoch.trial_id.in_(trial_ids)))
        session.execute(delete(StepValue).where(StepValue.job_id == job_id))
        session.execute(delete(RungValue).where(RungValue.job_id == job_id))
        session.execute(delete(Trial).where(Trial.job_id == job_id))
        session.execute(delete(Job).where(Job.id == job_id))
    log.info("job %s deleted (%d weights file(s), study %s)", job_id, len(numbers), study_name)
