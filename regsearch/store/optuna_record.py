"""Optuna's database record, written where Optuna's storage API costs a dozen round trips.

A new trial (the coordinator, after sampling on its in-memory study) and a trial's outcome (the
worker, inside the transaction that writes the result to the trial row).

``RDBStorage.create_new_trial(template_trial=...)`` re-reads the trial and the study's earlier
parameters for every parameter it copies (a distribution compatibility check): ~20 statements
and ~5 ms of the coordinator's CPU per trial with five parameters, the largest part of its work
per trial on a 2-core machine. The coordinator samples on its in-memory study, whose
``set_trial_param`` already made that compatibility check against the same trials, so here the
same rows are inserted into Optuna's own tables (its ORM models' column types, enum and
datetime conversions) without the re-reads, on the coordinator's own connection pool (no checkout
ping): 5 round trips instead of ~20.

Written by hand where the library has no cheaper call; it relies on Optuna's ORM models, which
match the database whenever ``RDBStorage`` opened it (Optuna refuses a schema of another
version). A loaded study's cached storage reads trials it has not seen from the database when
next asked, so the coordinator's record study sees these trials.

The outcome: ``RDBStorage.set_trial_state_values`` is its own transaction of ~6 statements
through the ORM, which the worker ran after committing the result (and which a crash in between
left for the coordinator to make up). :func:`finish_running_trial` writes the same state,
completion time and values with two statements inside the result's transaction, so the row and
the record change together. It is the one way a trial ends in Optuna's record: the worker calls
it in the result's transaction, the coordinator (its mirror, and a job it gives up on) with its
engine, in a transaction of its own. The state and values it writes come from the one decision
of a trial's end, ``regsearch.domain.trial_end``. ``tests/regsearch/test_optuna_record.py`` checks that both read back
exactly as ``create_new_trial`` and ``set_trial_state_values`` write them.

The learning curve: each epoch's val_acc as the Optuna trial's intermediate value (what
``trial.report`` would write; optuna-dashboard and ``plot_intermediate_values`` draw it). Optuna's
``set_trial_intermediate_value`` is a transaction per value; :func:`intermediate_values_upsert`
is one executemany inside the transaction that writes the epoch rows, and
``tests/worker/test_intermediate_values.py`` checks it against Optuna's own write.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from optuna.distributions import distribution_to_json
from optuna.storages._rdb import models  # Optuna's ORM models: see the module docstring
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaTrialState
from sqlalchemy import Connection, Engine, bindparam, cast, delete, func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from regsearch.domain.states import TrialState, optuna_state
from regsearch.store.db import StoreUnavailable


def create_running_trial(engine: Engine, study_id: int, template: FrozenTrial) -> tuple[int, int]:
    """Insert ``template`` (params, distributions, user attributes) as a RUNNING trial of the
    study in ``engine``'s database; returns (trial number, trial id).

    The number follows Optuna's rule, the count of the study's earlier trials, counted inside
    the INSERT under the study row's lock, as Optuna locks it. Five round trips: begin, lock,
    insert the trial, insert its parameters (and attributes), commit.
    """
    try:
        return _insert(engine, study_id, template)
    except OperationalError as exc:  # the coordinator's tick waits out an unreachable database
        raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc


def _insert(engine: Engine, study_id: int, template: FrozenTrial) -> tuple[int, int]:
    studies = models.StudyModel.__table__
    trials = models.TrialModel.__table__
    earlier = select(func.count()).select_from(trials).where(trials.c.study_id == study_id).scalar_subquery()
    # Table statements on a bare connection: the ORM's query and unit of work cost the
    # coordinator more CPU than the round trips themselves.
    with engine.begin() as conn:
        if conn.execute(select(studies.c.study_id).where(studies.c.study_id == study_id).with_for_update()).first() is None:
            raise KeyError(f"Optuna study {study_id} not found")  # as Optuna's find_or_raise_by_id
        trial_id, number = conn.execute(
            insert(trials).values(number=earlier, study_id=study_id, state=OptunaTrialState.RUNNING,
                                  datetime_start=_naive_utc(template.datetime_start), datetime_complete=None)
            .returning(trials.c.trial_id, trials.c.number)
        ).one()
        if template.params:
            conn.execute(insert(models.TrialParamModel.__table__), [
                {"trial_id": trial_id, "param_name": name,
                 "param_value": template.distributions[name].to_internal_repr(value),
                 "distribution_json": distribution_to_json(template.distributions[name])}
                for name, value in template.params.items()
            ])
        if template.user_attrs:
            conn.execute(insert(models.TrialUserAttributeModel.__table__), [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in template.user_attrs.items()
            ])
        return int(number), int(trial_id)


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Optuna's ``TrialModel.datetime_start`` setter: a naive datetime is local time, stored as
    naive UTC."""
    return None if value is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def finish_running_trial(target: Engine | Session | Connection, trial_id: int,
                         state: OptunaTrialState | TrialState | str, values: Sequence[float] | None) -> bool:
    """Move Optuna trial ``trial_id`` from RUNNING to ``state`` with ``values`` (complete
    trials); False, writing nothing, when it is not RUNNING (its outcome is already recorded).

    ``target``: the caller's session or connection (the write joins its transaction), or an
    engine (a transaction of its own). ``state``: Optuna's, or ours (``optuna_state`` maps it).
    """
    if not isinstance(state, OptunaTrialState):
        state = optuna_state(state)
    assert state.is_finished()
    if state == OptunaTrialState.COMPLETE and not values:
        # regsearch.domain.trial_end decides: a complete trial has its values, or it failed
        raise ValueError(f"Optuna trial {trial_id}: a COMPLETE outcome needs the objective's values")
    if isinstance(target, Engine):
        try:
            with target.begin() as conn:
                return _finish(conn, trial_id, state, values)
        except OperationalError as exc:  # the coordinator's tick waits out an unreachable database
            raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc
    return _finish(target, trial_id, state, values)


def _finish(target: Session | Connection, trial_id: int, state: OptunaTrialState,
            values: Sequence[float] | None) -> bool:
    trials = models.TrialModel.__table__
    finished = target.execute(
        update(trials).where(trials.c.trial_id == trial_id, trials.c.state == OptunaTrialState.RUNNING)
        .values(state=state, datetime_complete=_naive_utc(dt.datetime.now()))
    ).rowcount == 1
    if finished and values:
        rows = []
        for objective, value in enumerate(values):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            rows.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
        target.execute(insert(models.TrialValueModel.__table__), rows)
    return finished


# -- intermediate values ------------------------------------------------------------------------
# Optuna's ``set_trial_intermediate_value`` is its own transaction per value (find the trial,
# check it is RUNNING, find the step's row, insert or update). The worker writes each epoch's
# val_acc to ``trial_intermediate_values`` with the epoch rows instead: one executemany in the
# transaction that upserts the epochs (``regsearch.store.trials``), so optuna-dashboard's learning
# curves and ``optuna.visualization.plot_intermediate_values`` see the training as it goes.

def intermediate_value_rows(steps: Sequence[tuple[int, float | None]]) -> list[dict[str, object]]:
    """The bind rows of :func:`intermediate_values_upsert` for (step, value) pairs, values in
    Optuna's stored form (NaN and infinities as their type, the value NULL); None is skipped."""
    rows: list[dict[str, object]] = []
    for step, value in steps:
        if value is None:
            continue
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(float(value))
        rows.append({"step": step, "intermediate_value": stored, "intermediate_value_type": kind})
    return rows


def intermediate_values_upsert(dialect_insert: Any, optuna_trial_id: Any) -> Any:
    """``INSERT .. SELECT .. ON CONFLICT (trial_id, step) DO UPDATE`` of one intermediate value,
    to be executed with :func:`intermediate_value_rows` (plus the binds ``optuna_trial_id``
    needs): ``optuna_trial_id`` is a scalar SQL expression naming the Optuna trial.

    As Optuna's own call, it writes only to a RUNNING trial: the SELECT finds no row for a
    trial that is finished (or absent), so nothing is written and nothing fails. The binds are
    cast to the columns' types (PostgreSQL types a bare parameter in a SELECT list as text)."""
    trials = models.TrialModel.__table__
    values = models.TrialIntermediateValueModel.__table__
    columns = ("step", "intermediate_value", "intermediate_value_type")
    source = (
        select(trials.c.trial_id, *(cast(bindparam(c, type_=values.c[c].type), values.c[c].type) for c in columns))
        .where(trials.c.trial_id == optuna_trial_id, trials.c.state == OptunaTrialState.RUNNING)
    )
    stmt = dialect_insert(values).from_select(["trial_id", *columns], source)
    return stmt.on_conflict_do_update(index_elements=[values.c.trial_id, values.c.step],
                                      set_={c: stmt.excluded[c] for c in columns[1:]})


def delete_intermediate_values(optuna_trial_id: Any) -> Any:
    """Forget a trial's intermediate values (a released trial trains again from epoch 1)."""
    values = models.TrialIntermediateValueModel.__table__
    return delete(values).where(values.c.trial_id == optuna_trial_id)
