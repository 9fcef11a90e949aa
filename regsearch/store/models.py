"""The project's tables: jobs, trials and epochs (Optuna keeps its own tables beside them)."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The states are defined once, in regsearch.domain.states. FINAL_TRIAL_STATES is re-exported here
# only for services/coordinator until it imports it from there.
from regsearch.domain.states import (
    FINAL_TRIAL_STATES,  # noqa: F401
    JobState,
    TrialState,
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, dt.datetime: DateTime(timezone=True)}


class Job(Base):
    __tablename__ = "regsearch_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    spec: Mapped[dict[str, Any]]
    study_name: Mapped[str] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Complete trials so far; each completion takes the next value as its completion_seq
    # (the job row's lock orders them), which lets pruners read only what is new.
    n_complete: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    # What a worker loaded: {n_train, n_val, n_test, sample_shape, n_classes} (NULL until then).
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    trials: Mapped[list[Trial]] = relationship(back_populates="job", cascade="all, delete-orphan")


class Trial(Base):
    """One attempt at one configuration; ``number`` is the Optuna trial number within the study.

    A lost attempt (stale heartbeat) ends ``failed`` and, under the retry limit, its parameters
    run again as a new row with ``attempt + 1`` and ``retry_of`` pointing back; only the last
    attempt of a lineage counts toward the job's budget.
    """

    __tablename__ = "regsearch_trials"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_trial_job_number"),
        Index("ix_trial_job_state", "job_id", "state"),
        # A job's kept weights, and the runs of those configurations: a few rows of thousands.
        Index("ix_trial_job_weights", "job_id", "weights"),
        Index("ix_trial_job_confirm_of", "job_id", "confirm_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("regsearch_jobs.id", ondelete="CASCADE"))
    number: Mapped[int]
    optuna_trial_id: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default=TrialState.QUEUED)
    params: Mapped[dict[str, Any]]
    recipe: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any] | None]
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of: Mapped[int | None]
    # A confirmation run re-trains search trial ``confirm_of``'s configuration with its own
    # training ``seed`` (None: the spec's seed); the data split never changes.
    seed: Mapped[int | None]
    confirm_of: Mapped[int | None]
    # A complete trial's best-validation weights (regsearch.domain.states.WeightsState): kept in
    # the artifact store, evicted (outside the job's top budget.keep_weights) or not saved.
    weights: Mapped[str | None] = mapped_column(String(16))
    retried: Mapped[bool] = mapped_column(Boolean, default=False)  # a later attempt replaced it
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)  # lost or transient failure
    lease: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    superseded_result: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[dt.datetime | None]
    send_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    job: Mapped[Job] = relationship(back_populates="trials")


class Epoch(Base):
    __tablename__ = "regsearch_epochs"

    trial_id: Mapped[int] = mapped_column(ForeignKey("regsearch_trials.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)  # NULL for NaN
    train_acc: Mapped[float | None] = mapped_column(Float)  # NULL for NaN
    val_loss: Mapped[float | None] = mapped_column(Float)  # NULL for NaN
    val_acc: Mapped[float | None] = mapped_column(Float)  # NULL for NaN
    seconds: Mapped[float | None] = mapped_column(Float)  # NULL for NaN


class StepValue(Base):
    """A complete trial's reported objective per step: what the median pruner compares against.

    Keyed (job, step, trial) so "every complete trial's value at step s" is one index range.
    """

    __tablename__ = "regsearch_step_values"
    __table_args__ = (Index("ix_step_values_job_seq", "job_id", "completion_seq"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("regsearch_jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    completion_seq: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)  # NULL for NaN


class RungValue(Base):
    """A trial's value when it reached a successive-halving rung (Optuna's ``completed_rung_i``)."""

    __tablename__ = "regsearch_rung_values"
    __table_args__ = (Index("ix_rung_job_trial", "job_id", "trial_number"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("regsearch_jobs.id", ondelete="CASCADE"), primary_key=True)
    bracket: Mapped[int] = mapped_column(Integer, primary_key=True)
    rung: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class PublishedFamily(Base):
    """A model family one worker offers (``regsearch.store.families``): one row per (worker, family).

    A worker writes its rows when it starts and refreshes ``seen_at`` while it runs (every
    ``regsearch.store.families.REFRESH_S``); it deletes them when it stops. A family is *offered*
    while some row of it was seen within ``LIVE_S``. ``knobs`` is the family's knobs as JSON
    schema, which the torch-free API validates a plugin's knobs against.
    """

    __tablename__ = "regsearch_families"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    knobs: Mapped[dict[str, Any]]
    slots_doc: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobOwner(Base):
    """Which coordinator drives an active job (``regsearch.store.ownership``): a lease with a
    fencing token. ``token`` grows by one at every change of owner; a coordinator's write for the
    job commits only while the row still holds its token. No foreign key: a deleted job's row is
    left to the next owner change (it names no live job and is never read for one)."""

    __tablename__ = "regsearch_job_owners"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime]


class CoordinatorSeen(Base):
    """A live ``regsearch coordinator`` process and when it last renewed (jobs are shared out
    over the coordinators seen within one lease period)."""

    __tablename__ = "regsearch_coordinators"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[dt.datetime]
