"""What a worker learns about its job's data: the split sizes, and a dataset that cannot work.

A dataset error is deterministic (every trial of the job reads the same spec and files), so the
first worker that meets one ends the job instead of letting every trial fail the same way: it
records the reason as the job's error and asks for the job to stop; the coordinator then stops
its trials as for a cancellation and ends the job ``failed`` with that error. An ``auto``
network that cannot be used with the data's shape (not installed, ``make`` raises, it does not
trace, no slot: ``model.network: ...``) is as deterministic, and takes the same path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from regsearch.domain.states import ACTIVE_JOB_STATES
from regsearch.store.db import Database
from regsearch.store.models import Job, as_utc

__all__ = ["PublishedShape", "fail_job_for_data", "published_shape", "record_data"]

# A dataset's fields that do not change an example's shape (the split's proportions and seed).
_SPLIT_FIELDS = ("val_fraction", "test_fraction", "split_seed")
_RECENT_JOBS = 200  # how far back a submission looks for a job on the same data


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


@dataclass(frozen=True)
class PublishedShape:
    """An example's shape as a worker loaded it for ``job_id`` (whose job was created at ``created_at``)."""

    sample_shape: list[int]
    job_id: str
    created_at: dt.datetime


def _same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def key(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in _SPLIT_FIELDS}

    return key(a) == key(b)


def published_shape(db: Database, *, dataset: dict[str, Any]) -> PublishedShape | None:
    """The sample shape a worker published for the newest recent job on the same data (the spec's
    ``dataset`` up to its split), so a submission can be checked against it; None when none did."""
    with db.read() as session:
        rows = session.execute(
            select(Job.id, Job.spec, Job.data, Job.created_at).where(Job.data.is_not(None))
            .order_by(Job.created_at.desc()).limit(_RECENT_JOBS)
        ).all()
    for job_id, spec, data, created_at in rows:
        shape = (data or {}).get("sample_shape")
        if isinstance(shape, list) and _same_data((spec or {}).get("dataset") or {}, dataset):
            return PublishedShape([int(d) for d in shape], job_id, as_utc(created_at) or created_at)
    return None
