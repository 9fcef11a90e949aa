"""What a worker learns about its job's data: the split sizes, and a dataset that cannot work.

A dataset error is deterministic (every trial of the job reads the same spec and files), so the
first worker that meets one ends the job instead of letting every trial fail the same way: it
records the reason as the job's error and asks for the job to stop; the coordinator then stops
its trials as for a cancellation and ends the job ``failed`` with that error. An ``auto``
network that cannot be used with the data's shape (not installed, ``make`` raises, it does not
trace, no slot: ``model.network: ...``) is as deterministic, and takes the same path.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from regsearch.domain.states import ACTIVE_JOB_STATES
from regsearch.store.db import Database
from regsearch.store.models import Job

__all__ = ["fail_job_for_data", "record_data"]


def record_data(db: Database, *, job_id: str, data: dict[str, Any]) -> None:
    """The job's ``data`` (first writer wins: every worker loads the same splits)."""
    with db.session(durable=False) as session:
        session.execute(update(Job).where(Job.id == job_id, Job.data.is_(None)).values(data=data))


def fail_job_for_data(db: Database, *, job_id: str, reason: str) -> bool:
    """Stop an active job because its data (or its network) cannot be used; False when it had already ended."""
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE_JOB_STATES), Job.error.is_(None))
            .values(error=reason, cancel_requested=True)
        )
        return bool(result.rowcount)
