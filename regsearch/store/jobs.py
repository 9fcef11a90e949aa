"""Data functions for jobs: create (with its study), read, count, rank, cancel.

Keyword-only functions over a :class:`~regsearch.store.db.Database`; the API, the coordinator
and the dashboard (on a read-only ``Database``) call these rather than writing their own queries.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.exc import IntegrityError

from regsearch.domain.progress import state_counts
from regsearch.domain.ranking import RankedConfig, objectives_of, rank_configurations, rank_jobs
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import (
    ACTIVE_JOB_STATES,
    FINAL_JOB_STATES,
    JobState,
    TrialState,
)
from regsearch.store import studies
from regsearch.store.db import Database, StoreUnavailable
from regsearch.store.models import Epoch, Job, Trial, utcnow
from regsearch.store.retry import is_transient

log = logging.getLogger("regsearch.store")


@dataclass(frozen=True)
class JobCreated:
    job: Job
    created: bool  # False when an Idempotency-Key matched an earlier job


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def create_job(db: Database, *, spec: JobSpec, idempotency_key: str | None = None) -> JobCreated:
    """Store a validated job and create its Optuna study; a repeated key returns the first job."""
    if idempotency_key:
        existing = find_by_idempotency_key(db, key=idempotency_key)
        if existing is not None:
            return JobCreated(existing, created=False)
    job_id = new_job_id()
    try:
        study_name = studies.create_study(db.url, job_id, spec)
    except Exception as exc:
        if is_transient(exc):  # Optuna wraps the driver's error; the caller answers 503
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        raise
    job = Job(
        id=job_id,
        name=spec.name,
        status=JobState.QUEUED,
        spec=spec.model_dump(mode="json", exclude_none=True),
        study_name=study_name,
        idempotency_key=idempotency_key or None,
    )
    try:
        with db.session() as session:
            session.add(job)
    except IntegrityError:
        # Two submissions raced on the same key: keep the first, drop our study.
        _drop_study(db, study_name)
        existing = find_by_idempotency_key(db, key=idempotency_key or "")
        if existing is None:
            raise
        return JobCreated(existing, created=False)
    except BaseException:
        _drop_study(db, study_name)
        raise
    return JobCreated(job, created=True)


def _drop_study(db: Database, study_name: str) -> None:
    """Best effort: a study left behind by a failed submission holds no trials and no job."""
    try:
        studies.delete_study(db.url, study_name)
    except Exception:  # noqa: BLE001 - the database may be the reason we are here
        log.warning("could not delete study %s of a failed submission", study_name)


def find_by_idempotency_key(db: Database, *, key: str) -> Job | None:
    with db.read() as session:
        return session.scalars(select(Job).where(Job.idempotency_key == key)).first()


def get_job(db: Database, *, job_id: str) -> Job | None:
    with db.read() as session:
        return session.get(Job, job_id)


def list_jobs(db: Database, *, limit: int = 100, offset: int = 0) -> tuple[list[Job], int]:
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(Job)) or 0
        rows = session.scalars(select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).all()
        return list(rows), total


def trial_counts(db: Database, *, job_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per job, the number of trials in each state (:func:`regsearch.domain.progress.state_counts`:
    attempts that were retried excluded, every counted state present)."""
    found: dict[str, list[tuple[str, int]]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        with db.read() as session:
            rows = session.execute(
                select(Trial.job_id, Trial.state, func.count())
                .where(Trial.job_id.in_(job_ids), Trial.retried.is_(False))
                .group_by(Trial.job_id, Trial.state)
            ).all()
        for job_id, state, n in rows:
            found[job_id].append((state, n))
    return {job_id: state_counts(pairs) for job_id, pairs in found.items()}


def request_cancel(db: Database, *, job_id: str) -> Job | None:
    """Mark a job for cancellation; the coordinator and the workers act on the flag."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        if job.status in ACTIVE_JOB_STATES:
            job.cancel_requested = True
        return job


def set_job_status(db: Database, *, job_id: str, status: JobState, error: str | None = None) -> None:
    now = utcnow()
    values: dict[str, Any] = {"status": status}
    if status == JobState.RUNNING:
        values["started_at"] = now
    if status in FINAL_JOB_STATES:
        values["finished_at"] = now
    if error is not None:
        values["error"] = error
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def active_jobs(db: Database) -> list[Job]:
    with db.read() as session:
        return list(session.scalars(select(Job).where(Job.status.in_(ACTIVE_JOB_STATES)).order_by(Job.created_at)).all())


def trial_dict(trial: Trial) -> dict[str, Any]:
    """The fields :mod:`regsearch.domain.confirm` and the report read, from a trial row."""
    return {"number": trial.number, "state": trial.state, "params": trial.params, "metrics": trial.metrics,
            "confirm_of": trial.confirm_of, "seed": trial.seed}


def ranking_query(job_ids: Any) -> Select[Any]:
    """The rows :func:`regsearch.domain.ranking.rank_configurations` reads, for several jobs in
    one statement: every complete trial (search and confirmation runs), without the bulky
    columns. ``job_ids``: a list of ids or a subquery."""
    return select(Trial.job_id, Trial.number, Trial.state, Trial.params, Trial.metrics, Trial.confirm_of,
                  Trial.seed).where(Trial.job_id.in_(job_ids), Trial.state == TrialState.COMPLETE)


@dataclass(frozen=True)
class Ranked:
    """A search trial in the best-k answer, with its seed group when it was confirmed."""

    trial: Trial
    seed_runs: list[Trial]  # itself and its complete confirmation runs; [] when never confirmed
    ranked: RankedConfig  # its place in the ranking (scores, front)


def best_configurations(db: Database, *, job: Job, k: int = 5) -> list[Ranked]:
    """The first ``k`` configurations of the job's ranking (:mod:`regsearch.domain.ranking`:
    confirmed ones by their seed-group mean first; several objectives: Pareto fronts first)."""
    with db.read() as session:
        rows = list(session.scalars(
            select(Trial).where(Trial.job_id == job.id, Trial.state == TrialState.COMPLETE)
        ).all())
    by_number = {t.number: t for t in rows}
    ranking = rank_configurations([trial_dict(t) for t in rows], objectives_of(job.spec), k=k)
    return [
        Ranked(by_number[r.number], [by_number[int(t["number"])] for t in r.runs] if r.confirmed else [], r)
        for r in ranking
    ]


def ranked_jobs(db: Database, *, jobs: list[Job], k: int | None = None) -> dict[str, list[RankedConfig]]:
    """Each job's first ``k`` configurations (:func:`best_configurations`), for several jobs in one
    query. The ranked trials are dicts (no recipe)."""
    if not jobs:
        return {}
    with db.read() as session:
        rows = [dict(row) for row in session.execute(ranking_query([job.id for job in jobs])).mappings()]
    return rank_jobs(rows, {job.id: objectives_of(job.spec) for job in jobs}, k=k)


def best_of_jobs(db: Database, *, jobs: list[Job]) -> dict[str, RankedConfig | None]:
    """Each job's first configuration (:func:`ranked_jobs` with ``k=1``), for a page of jobs."""
    return {job_id: (ranked[0] if ranked else None) for job_id, ranked in ranked_jobs(db, jobs=jobs, k=1).items()}


def jobs_by_id(db: Database, *, job_ids: list[str]) -> list[Job]:
    """The jobs of ``job_ids`` that exist, in the order given."""
    with db.read() as session:
        found = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
    return [found[job_id] for job_id in job_ids if job_id in found]


def list_trials(
    db: Database, *, job_id: str, state: TrialState | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Trial], int]:
    query = select(Trial).where(Trial.job_id == job_id)
    if state:
        query = query.where(Trial.state == state)
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(Trial.number).limit(limit).offset(offset)).all()
        return list(rows), total


def get_trial(db: Database, *, job_id: str, number: int) -> tuple[Trial, list[Row[Any]]] | None:
    """A trial and its epochs (ordered)."""
    with db.read() as session:
        trial = session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.number == number)).first()
        if trial is None:
            return None
        epochs = session.execute(
            select(Epoch.epoch, Epoch.train_loss, Epoch.train_acc, Epoch.val_loss, Epoch.val_acc, Epoch.seconds)
            .where(Epoch.trial_id == trial.id)
            .order_by(Epoch.epoch)
        ).all()
        return trial, list(epochs)


def elapsed_seconds(job: Job, now: dt.datetime | None = None) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or now or utcnow()
    start = job.started_at
    if start.tzinfo is None:  # SQLite returns naive datetimes
        start = start.replace(tzinfo=dt.timezone.utc)
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (end - start).total_seconds())
