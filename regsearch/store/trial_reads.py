"""Reads of a job's trials for the pages and the report: a fixed number of queries each, never one per trial.

Keyword-only functions over a :class:`~regsearch.store.db.Database` (the dashboard's is read-only),
as in :mod:`regsearch.store.jobs`. ``GET /jobs/{id}/report`` and the dashboard's "Evidence"
section read the report's trials through :func:`report_trials`, so the two agree to the last digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from regsearch.domain.jsonsafe import finite_or_none
from regsearch.domain.states import TrialState
from regsearch.store.db import Database
from regsearch.store.models import Epoch, Trial

EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def report_trials(db: Database, *, job_id: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The trials :func:`regsearch.evidence.build_report` reads (number, state, params, metrics,
    seed, confirm_of, retried, a complete trial's epochs; a non-finite number as None) by number, and the job's recipe (any
    complete trial's: the report names the slots by it)."""
    with db.read() as session:
        rows = session.execute(
            select(Trial.number, Trial.state, Trial.params, Trial.metrics, Trial.seed, Trial.confirm_of,
                   Trial.retried)
            .where(Trial.job_id == job_id).order_by(Trial.number)
        ).mappings().all()
        recipe = session.scalar(
            select(Trial.recipe).where(Trial.job_id == job_id, Trial.state == TrialState.COMPLETE,
                                       Trial.recipe.is_not(None))
            .order_by(Trial.number).limit(1)
        )
        # the per-epoch rows of the complete trials: convergence to the job's target is computed
        # from them at report time (the target depends on the job's best, regsearch.domain.convergence)
        epochs: dict[int, list[dict[str, Any]]] = {}
        for number, *values in session.execute(
            select(Trial.number, *(getattr(Epoch, column) for column in EPOCH_COLUMNS))
            .join(Trial, Trial.id == Epoch.trial_id)
            .where(Trial.job_id == job_id, Trial.state == TrialState.COMPLETE)
            .order_by(Trial.number, Epoch.epoch)
        ):
            epochs.setdefault(number, []).append(dict(zip(EPOCH_COLUMNS, values)))
    return [finite_or_none({**row, "retried": bool(row["retried"]), "epochs": epochs.get(row["number"], [])})
            for row in rows], recipe


def trials_overview(db: Database, *, job_id: str) -> list[dict[str, Any]]:
    """One dict per trial of a job: its row (no recipe) and, from its epochs, how many it recorded
    and its best val_acc so far (what running trials and trials without a summary can show). One
    statement: the trials joined to an aggregate of their epochs."""
    per_trial = (
        select(Epoch.trial_id, func.count().label("epochs_recorded"), func.max(Epoch.val_acc).label("val_acc_so_far"))
        .where(Epoch.trial_id.in_(select(Trial.id).where(Trial.job_id == job_id)))
        .group_by(Epoch.trial_id)
        .subquery()
    )
    statement = (
        select(Trial.id.label("trial_id"), Trial.number, Trial.state, Trial.params, Trial.metrics, Trial.attempt,
               Trial.retry_of, Trial.retried, Trial.confirm_of, Trial.seed, Trial.worker, Trial.device, Trial.error,
               Trial.superseded_result.is_not(None).label("superseded"),
               Trial.created_at, Trial.started_at, Trial.heartbeat_at, Trial.finished_at,
               per_trial.c.epochs_recorded, per_trial.c.val_acc_so_far)
        .outerjoin(per_trial, per_trial.c.trial_id == Trial.id)
        .where(Trial.job_id == job_id)
        .order_by(Trial.number)
    )
    with db.read() as session:
        return [dict(row) for row in session.execute(statement).mappings()]


def epoch_curves(db: Database, *, job_id: str, numbers: Iterable[int]) -> list[tuple[Any, ...]]:
    """``(number, epoch, train_loss, train_acc, val_loss, val_acc, seconds)`` of the given trials,
    by trial number and epoch."""
    numbers = list(numbers)
    if not numbers:
        return []
    with db.read() as session:
        return [tuple(row) for row in session.execute(
            select(Trial.number, *(getattr(Epoch, column) for column in EPOCH_COLUMNS))
            .join(Trial, Trial.id == Epoch.trial_id)
            .where(Trial.job_id == job_id, Trial.number.in_(numbers))
            .order_by(Trial.number, Epoch.epoch)
        )]


def trial_recipes(db: Database, *, job_id: str, numbers: Iterable[int]) -> dict[int, dict[str, Any] | None]:
    """The recipes of the given trials (the bulky column: read only for the few shown)."""
    numbers = list(numbers)
    if not numbers:
        return {}
    with db.read() as session:
        rows = session.execute(
            select(Trial.number, Trial.recipe).where(Trial.job_id == job_id, Trial.number.in_(numbers))
        ).all()
    return {int(number): recipe for number, recipe in rows}


def retried_by(db: Database, *, job_id: str, number: int) -> int | None:
    """The number of the attempt that repeated trial ``number`` after it was lost; None when none did."""
    with db.read() as session:
        found = session.scalar(select(Trial.number).where(Trial.job_id == job_id, Trial.retry_of == number).limit(1))
    return None if found is None else int(found)
