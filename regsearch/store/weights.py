"""Which trials keep their trained weights: the job's top ``budget.keep_weights`` configurations.

A complete trial's weights go to the artifact store before its result (``weights = kept``). In
the transaction that completes it (:func:`regsearch.store.trials.finish`, under the job row's
lock, so completions are ranked one at a time), :func:`retain` ranks the configurations that
hold weights (at most ``keep_weights`` + 1: the kept ones and the new one) with the project's one
ranking (:func:`regsearch.domain.ranking.rank_configurations`) and marks every kept trial outside
the first ``keep_weights`` configurations ``evicting``: the number of configurations with kept
weights never exceeds ``keep_weights``, at any commit, and the cost does not grow with the job.
With one objective this is exactly the job's top ``keep_weights`` (a configuration that left it
never comes back); with confirmation means or several objectives, the top of those that still
hold weights (weights are never re-made). A configuration is a search trial with its
confirmation runs, so they keep or lose their weights together.

After that commit the worker calls :func:`sweep`, which deletes the files of the job's
``evicting`` trials and marks them ``evicted``. A worker that dies in between leaves ``evicting``
rows whose files the job's next sweep deletes; the API already answers 404 "evicted" for them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, union_all, update

from regsearch.domain.ranking import rank_configurations
from regsearch.domain.states import TrialState, WeightsState
from regsearch.store.artifacts import ArtifactStore, weights_key
from regsearch.store.db import Database
from regsearch.store.models import Trial

log = logging.getLogger("regsearch.store")
_TRIALS = Trial.__table__


@dataclass(frozen=True)
class Retention:
    """How many configurations of a job keep weights, and the job's objectives to rank them by."""

    keep: int
    objectives: Sequence[tuple[str, str]] = field(default_factory=lambda: [("val_acc", "maximize")])


def _configuration() -> Any:
    """A trial's configuration: the search trial it re-runs, or its own number."""
    return func.coalesce(_TRIALS.c.confirm_of, _TRIALS.c.number)


def _kept_runs(session: Any, job_id: str) -> tuple[list[int], list[dict[str, Any]]]:
    """The job's configurations that hold weights, and their complete runs (search trials and
    confirmation runs): a few rows whatever the job's size."""
    kept = _TRIALS.c.weights == WeightsState.KEPT
    configurations = [int(n) for n in session.scalars(
        select(_configuration()).where(_TRIALS.c.job_id == job_id, kept).distinct()).all()]
    # their search trials and confirmation runs: two index lookups (an OR would scan the job)
    columns = (_TRIALS.c.number, _TRIALS.c.state, _TRIALS.c.metrics, _TRIALS.c.confirm_of, _TRIALS.c.seed)
    runs = union_all(select(*columns).where(_TRIALS.c.job_id == job_id, _TRIALS.c.number.in_(configurations)),
                     select(*columns).where(_TRIALS.c.job_id == job_id, _TRIALS.c.confirm_of.in_(configurations)))
    rows = [dict(row) for row in session.execute(runs).mappings() if row.state == TrialState.COMPLETE]
    return configurations, rows


def _top(rows: list[dict[str, Any]], retention: Retention) -> list[int]:
    # RETENTION RANKING: the project's one ranking decides which configurations keep weights.
    return [ranked.number for ranked in rank_configurations(rows, retention.objectives, k=retention.keep)]


def retain(session: Any, *, job_id: str, retention: Retention) -> int:
    """Mark the kept trials outside the top ``retention.keep`` configurations ``evicting``; how many.

    Runs in the caller's transaction, after the job row was locked. Ranks only the configurations
    that hold weights (the kept ones, the new one among them) with their complete runs: a few
    rows whatever the job's size. With one objective that is exactly the job's top ``keep``
    (a configuration once outside it never comes back); with confirmation runs or several
    objectives, the top ``keep`` of those that still hold weights."""
    configurations, rows = _kept_runs(session, job_id)
    if len(configurations) <= retention.keep:
        return 0  # nothing to evict
    top = _top(rows, retention)
    kept = _TRIALS.c.weights == WeightsState.KEPT
    return int(session.execute(
        update(_TRIALS).where(_TRIALS.c.job_id == job_id, kept, _configuration().not_in(top))
        .values(weights=WeightsState.EVICTING)
    ).rowcount or 0)


def worth_saving(db: Database, *, job_id: str, number: int, metrics: dict[str, Any], retention: Retention) -> bool:
    """Whether a complete search trial would stay in the job's top ``retention.keep``
    configurations: the same ranking :func:`retain` makes when its result is written, made
    before the file is. A trial it would evict at once is never written (most trials of a long
    job: the file, the ranking under the job's lock and the sweep are the bulk of a tiny trial's
    overhead). Made without the job's lock: with one objective the kept set only gets better
    meanwhile, so a trial outside the top now is outside it then; otherwise the file is written
    and :func:`retain` decides, as before."""
    if retention.keep <= 0:
        return False
    with db.read() as session:
        configurations, rows = _kept_runs(session, job_id)
    if len(configurations) < retention.keep or len(retention.objectives) != 1:
        return True
    candidate = {"number": number, "state": TrialState.COMPLETE, "metrics": metrics, "confirm_of": None, "seed": None}
    return number in _top([*rows, candidate], retention)


def sweep(db: Database, store: ArtifactStore, *, job_id: str) -> list[int]:
    """Delete the files of the job's ``evicting`` trials, then mark them ``evicted``; their numbers."""
    with db.read() as session:
        numbers = list(session.scalars(
            select(_TRIALS.c.number).where(_TRIALS.c.job_id == job_id, _TRIALS.c.weights == WeightsState.EVICTING)
        ).all())
    for number in numbers:
        store.delete(weights_key(job_id, number))
    if numbers:
        with db.session() as session:
            session.execute(
                update(_TRIALS).where(_TRIALS.c.job_id == job_id, _TRIALS.c.number.in_(numbers),
                                      _TRIALS.c.weights == WeightsState.EVICTING)
                .values(weights=WeightsState.EVICTED)
            )
        log.info("job %s: evicted the weights of trial(s) %s", job_id, numbers)
    return numbers


def kept_configurations(db: Database, *, job_id: str) -> set[int]:
    """The configurations (search trial numbers) of the job whose weights are kept."""
    with db.read() as session:
        return {int(n) for n in session.scalars(
            select(_configuration()).where(_TRIALS.c.job_id == job_id, _TRIALS.c.weights == WeightsState.KEPT)
            .distinct()).all()}


def weights_row(db: Database, *, job_id: str, number: int) -> Any:
    """What ``GET /jobs/{id}/trials/{number}/weights`` needs of a trial: its state, error and
    weights; None when the job has no such trial."""
    with db.read() as session:
        return session.execute(
            select(_TRIALS.c.number, _TRIALS.c.state, _TRIALS.c.error, _TRIALS.c.weights)
            .where(_TRIALS.c.job_id == job_id, _TRIALS.c.number == number)
        ).first()
