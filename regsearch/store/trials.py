"""The trial lifecycle in SQL: add, enqueue, claim, beat, record epochs, finish, reap.

Every transition is one conditional UPDATE, so two processes racing on a trial (a duplicate
delivery, a reaper and a late worker) settle on exactly one winner without locks held across
training. A worker owns a running trial through its ``lease``; a write carrying a lease that
no longer matches is a late result and is kept aside as ``superseded_result``.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState as OptunaTrialState
from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from regsearch.domain.jsonsafe import finite_or_none
from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.states import FINAL_TRIAL_STATES, TrialState, WeightsState
from regsearch.domain.stored_spec import StoredSpec
from regsearch.store.db import Database, is_sqlite
from regsearch.store.models import Epoch, Job, StepValue, Trial, utcnow
from regsearch.store.optuna_record import (
    delete_intermediate_values,
    finish_running_trial,
    intermediate_value_rows,
    intermediate_values_upsert,
)
from regsearch.store.weights import Retention, retain

# The per-trial statements (add, mark sent, claim, epochs, result) are written against the
# tables, not the mapped classes: an ORM-enabled UPDATE or INSERT adds session bookkeeping and
# bulk-insert planning to every call (bench/store_calls.py: the claim and the result took 2.3
# and 3.9 ms through the ORM, 1.5 and 2.0 ms so), on the coordinator's or a worker's path.
_TRIALS, _JOBS = Trial.__table__, Job.__table__


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a running trial."""

    trial_id: int
    lease: str
    job_id: str
    number: int
    optuna_trial_id: int
    params: dict[str, Any]
    spec: dict[str, Any]
    study_name: str
    seed: int | None = None  # a confirmation run's own training seed
    confirm_of: int | None = None  # the search trial a confirmation run re-runs


@dataclass(frozen=True)
class OptunaOutcome:
    """A trial's outcome for Optuna's record: its Optuna trial id, final state and values."""

    trial_id: int
    state: OptunaTrialState
    values: list[float] | None = None


@dataclass(frozen=True)
class Control:
    """What a running trial learns at each beat: does it still own the trial, and go on?"""

    owner: bool
    cancelled: bool


def add_trial(
    db: Database,
    *,
    job_id: str,
    number: int,
    optuna_trial_id: int,
    params: dict[str, Any],
    attempt: int = 1,
    retry_of: int | None = None,
    seed: int | None = None,
    confirm_of: int | None = None,
) -> int:
    """Insert a queued trial row; returns its id."""
    with db.session() as session:
        return int(session.execute(
            insert(_TRIALS).values(
                job_id=job_id, number=number, optuna_trial_id=optuna_trial_id, params=params,
                attempt=attempt, retry_of=retry_of, seed=seed, confirm_of=confirm_of, state=TrialState.QUEUED,
            ).returning(_TRIALS.c.id)
        ).scalar_one())


def mark_sent(db: Database, *, trial_ids: list[int]) -> None:
    """Record that a message for each trial went to the broker (for the reconciler)."""
    if not trial_ids:
        return
    with db.session(durable=False) as session:  # a lost stamp only makes the reconciler send again
        session.execute(
            update(_TRIALS).where(_TRIALS.c.id.in_(trial_ids), _TRIALS.c.state == TrialState.QUEUED)
            .values(enqueued_at=utcnow(), send_count=_TRIALS.c.send_count + 1)
        )


@dataclass(frozen=True)
class Deferred:
    """A refused claim: the trial's job already runs ``budget.parallelism`` trials."""


def claim(db: Database, *, trial_id: int, worker: str, device: str) -> Claim | Deferred | None:
    """Atomically move a queued trial to running; None when it is not queued (a duplicate),
    :class:`Deferred` when its job already runs ``budget.parallelism`` trials.

    The coordinator sends ``prepare_ahead`` messages beyond ``parallelism`` so that a worker
    finishing a trial finds the next one waiting in the broker; the limit is enforced here, under
    the job row's lock. A trial refused for that reason is marked unsent (``enqueued_at`` NULL),
    and the coordinator sends it again once a running trial ends.
    """
    lease = uuid.uuid4().hex
    # Not durable: a claim lost in a database crash leaves the trial queued, and the worker's
    # lease then matches nothing, so its heartbeats and its result are refused and the trial
    # runs again; the next trial starts a WAL flush sooner.
    with db.session(durable=False) as session:
        trial = session.execute(
            select(_TRIALS.c.state, _TRIALS.c.number, _TRIALS.c.optuna_trial_id, _TRIALS.c.params, _TRIALS.c.seed,
                   _TRIALS.c.confirm_of, _TRIALS.c.job_id, _JOBS.c.spec, _JOBS.c.study_name)
            .join(_JOBS, _JOBS.c.id == _TRIALS.c.job_id).where(_TRIALS.c.id == trial_id)
            .with_for_update(of=_JOBS, key_share=True)
        ).one_or_none()
        if trial is None or trial.state != TrialState.QUEUED:
            return None
        room = parallelism_room(session, trial.job_id, trial.spec)
        if room is not None and room <= 0:
            session.execute(
                update(_TRIALS).where(_TRIALS.c.id == trial_id, _TRIALS.c.state == TrialState.QUEUED).values(enqueued_at=None)
            )
            return Deferred()
        now = utcnow()  # after the lock: a trial starts once the one it waited for has ended
        result = session.execute(
            update(_TRIALS)
            .where(_TRIALS.c.id == trial_id, _TRIALS.c.state == TrialState.QUEUED)
            .values(state=TrialState.RUNNING, lease=lease, worker=worker, device=device, started_at=now, heartbeat_at=now)
        )
        if result.rowcount != 1:
            return None
        return Claim(
            trial_id=trial_id, lease=lease, job_id=trial.job_id, number=trial.number,
            optuna_trial_id=trial.optuna_trial_id, params=dict(trial.params), spec=dict(trial.spec),
            study_name=trial.study_name, seed=trial.seed, confirm_of=trial.confirm_of,
        )


def parallelism_room(session: Any, job_id: str, spec: dict[str, Any] | None) -> int | None:
    """How many more of the job's trials may start now (``budget.parallelism`` minus those
    running); None when the spec sets no limit. Call it holding the job row's lock: its own
    statement, after the lock, so under READ COMMITTED it sees the claims that held the lock
    before this one (a subquery of the locking SELECT might not)."""
    parallelism = StoredSpec.read(spec).parallelism
    if parallelism is None:
        return None
    running = session.scalar(
        select(func.count()).select_from(_TRIALS)
        .where(_TRIALS.c.job_id == job_id, _TRIALS.c.state == TrialState.RUNNING)
    ) or 0
    return parallelism - running


def _control(session: Any, trial_id: int, lease: str, now: dt.datetime) -> Control:
    owned = session.execute(
        update(_TRIALS)
        .where(_TRIALS.c.id == trial_id, _TRIALS.c.lease == lease, _TRIALS.c.state == TrialState.RUNNING)
        .values(heartbeat_at=now)
    ).rowcount == 1
    cancelled = bool(
        session.scalar(select(Job.cancel_requested).join(Trial, Trial.job_id == Job.id).where(Trial.id == trial_id))
    )
    return Control(owner=owned, cancelled=cancelled)


def beat(db: Database, *, trial_id: int, lease: str) -> Control:
    """Refresh the heartbeat of a running trial."""
    with db.session(durable=False) as session:
        return _control(session, trial_id, lease, utcnow())


def dialect_insert(db: Database) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    return sqlite.insert if is_sqlite(db.url) else postgresql.insert


@functools.cache
def _epoch_upsert_statement(dialect_insert_fn: Any) -> Any:
    """INSERT .. ON CONFLICT (trial, epoch) DO UPDATE, built once per dialect and executed with
    a list of rows (one executemany: its compiled form is cached, whatever the row count)."""
    epochs = Epoch.__table__
    stmt = dialect_insert_fn(epochs)
    columns = ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")
    return stmt.on_conflict_do_update(index_elements=[epochs.c.trial_id, epochs.c.epoch],
                                      set_={c: stmt.excluded[c] for c in columns})


@functools.cache
def _step_values_insert_statement(dialect_insert_fn: Any) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING into the reported values, built once per dialect."""
    return dialect_insert_fn(StepValue.__table__).on_conflict_do_nothing()


@functools.cache
def _intermediate_values_statement(dialect_insert_fn: Any) -> Any:
    """Each epoch's val_acc as the Optuna trial's intermediate value (Optuna's record), the
    Optuna trial found from the trial row (bind ``row_id``), built once per dialect."""
    optuna_trial_id = select(_TRIALS.c.optuna_trial_id).where(_TRIALS.c.id == bindparam("row_id")).scalar_subquery()
    return intermediate_values_upsert(dialect_insert_fn, optuna_trial_id)


def _write_epochs(session: Any, db: Database, trial_id: int, epochs: list[EpochMetrics]) -> None:
    """The epoch rows (one statement) and, in Optuna's record, their val_acc as intermediate
    values (one executemany): what optuna-dashboard and ``plot_intermediate_values`` draw."""
    rows = [{"trial_id": trial_id, **finite_or_none(e.as_dict())} for e in epochs]
    session.execute(_epoch_upsert_statement(dialect_insert(db)), rows)
    values = intermediate_value_rows([(e.epoch, e.val_acc) for e in epochs])
    if values:
        session.execute(_intermediate_values_statement(dialect_insert(db)),
                        [{"row_id": trial_id, **row} for row in values])


def record_epochs(db: Database, *, trial_id: int, lease: str, epochs: list[EpochMetrics],
                  recipe: dict[str, Any] | None = None) -> Control:
    """Upsert epoch rows (one statement; key: trial, epoch) and beat, in one transaction.

    The trial's ``recipe`` rides along with its first write. A worker that lost its lease
    writes nothing: its epochs would mix with the new attempt's.
    """
    with db.session(durable=False) as session:
        control = _control(session, trial_id, lease, utcnow())
        if control.owner and epochs:
            _write_epochs(session, db, trial_id, epochs)
        if control.owner and recipe is not None:
            session.execute(update(_TRIALS).where(_TRIALS.c.id == trial_id).values(recipe=recipe))
        return control


def finish(
    db: Database,
    *,
    trial_id: int,
    lease: str,
    state: TrialState,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
    retryable: bool = False,
    epochs: list[EpochMetrics] | None = None,
    step_values: dict[int, float] | None = None,
    recipe: dict[str, Any] | None = None,
    record: OptunaOutcome | None = None,
    weights: WeightsState | None = None,
    retention: Retention | None = None,
) -> bool:
    """Write a running trial's outcome; False (result kept as superseded) if the lease was lost.

    ``epochs`` not yet recorded are written in the same transaction; ``step_values`` (the
    reported objective per step) of a complete trial feed the median pruner; ``record`` is the
    outcome for Optuna's record, written in the same transaction too, so that the row and the
    record never disagree. ``weights``: what became of a complete trial's weights; ``kept`` ones
    are ranked against the job's under ``retention`` (:func:`regsearch.store.weights.retain`).
    """
    assert state in FINAL_TRIAL_STATES
    now = utcnow()
    metrics = finite_or_none(metrics) if metrics is not None else None
    with db.session() as session:
        row = session.execute(
            update(_TRIALS)
            .where(_TRIALS.c.id == trial_id, _TRIALS.c.lease == lease, _TRIALS.c.state == TrialState.RUNNING)
            .values(state=state, metrics=metrics, error=error, finished_at=now, heartbeat_at=now,
                    retried=False, retryable=retryable, **({"recipe": recipe} if recipe is not None else {}),
                    **({"weights": weights} if weights is not None else {}))
            .returning(_TRIALS.c.job_id, _TRIALS.c.number)
        ).first()
        done = row is not None
        if done and epochs:
            _write_epochs(session, db, trial_id, epochs)
        if done and state == TrialState.COMPLETE:
            # The job row's lock orders completions, so completion_seq is committed in order.
            seq = session.execute(
                update(_JOBS).where(_JOBS.c.id == row.job_id).values(n_complete=_JOBS.c.n_complete + 1)
                .returning(_JOBS.c.n_complete)
            ).scalar_one()
            if step_values:
                session.execute(_step_values_insert_statement(dialect_insert(db)), [
                    {"job_id": row.job_id, "step": step, "trial_number": row.number, "completion_seq": seq,
                     "value": finite_or_none(value)}
                    for step, value in step_values.items()
                ])
            if weights == WeightsState.KEPT and retention is not None:
                retain(session, job_id=row.job_id, retention=retention)
        if done and record is not None:
            finish_running_trial(session, record.trial_id, record.state, record.values)
        if not done:
            session.execute(
                update(Trial).where(Trial.id == trial_id).values(
                    superseded_result={"state": state, "metrics": metrics, "error": error, "lease": lease,
                                       "at": now.isoformat()}
                )
            )
        return done


def fail_stale(db: Database, *, trial_id: int, older_than: dt.datetime, reason: str, retryable: bool = True) -> bool:
    """Fail a running trial whose heartbeat is still older than ``older_than`` (reaper side)."""
    with db.session() as session:
        return session.execute(
            update(Trial)
            .where(Trial.id == trial_id, Trial.state == TrialState.RUNNING, Trial.heartbeat_at < older_than)
            .values(state=TrialState.FAILED, error=reason, finished_at=utcnow(), retryable=retryable)
        ).rowcount == 1


def fail_queued(db: Database, *, trial_id: int, reason: str, retryable: bool = False,
                state: TrialState = TrialState.FAILED) -> bool:
    """End a trial that never started (failed unless ``state`` says otherwise)."""
    with db.session() as session:
        return session.execute(
            update(Trial).where(Trial.id == trial_id, Trial.state == TrialState.QUEUED)
            .values(state=state, error=reason, finished_at=utcnow(), retryable=retryable)
        ).rowcount == 1


def mark_retried(db: Database, *, trial_id: int) -> bool:
    with db.session() as session:
        return session.execute(
            update(Trial).where(and_(Trial.id == trial_id, Trial.retried.is_(False))).values(retried=True)
        ).rowcount == 1


def job_trials(db: Database, *, job_id: str) -> list[Trial]:
    with db.read() as session:
        return list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).all())


def changed_trials(db: Database, *, job_id: str, after_id: int, open_ids: list[int]) -> list[Trial]:
    """Rows added after ``after_id`` plus the rows ``open_ids`` (queued or running when last read):
    all that can have changed for the coordinator, whatever the job's size."""
    condition = Trial.id > after_id
    if open_ids:
        condition = or_(condition, Trial.id.in_(open_ids))
    with db.read() as session:
        return list(session.scalars(select(Trial).where(Trial.job_id == job_id, condition)).all())


def release(db: Database, *, trial_id: int, lease: str) -> bool:
    """Give a running trial back to the queue (worker draining): it restarts from epoch 1.

    ``enqueued_at`` is cleared so the coordinator sends it again at its next tick.
    """
    from sqlalchemy import delete

    with db.session() as session:
        released = session.execute(
            update(Trial)
            .where(Trial.id == trial_id, Trial.lease == lease, Trial.state == TrialState.RUNNING)
            .values(state=TrialState.QUEUED, lease=None, worker=None, device=None, started_at=None,
                    heartbeat_at=None, enqueued_at=None)
        ).rowcount == 1
        if released:
            session.execute(delete(Epoch).where(Epoch.trial_id == trial_id))
            session.execute(delete_intermediate_values(
                select(Trial.optuna_trial_id).where(Trial.id == trial_id).scalar_subquery()))
        return released
