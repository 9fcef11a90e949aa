"""regsearch's own writes to Optuna's record (a new trial, an outcome) read back exactly as
Optuna's ``create_new_trial(template_trial=...)`` and ``set_trial_state_values`` write them, on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from regsearch.store.db import Database, StoreUnavailable
from regsearch.store.optuna_record import create_running_trial
from regsearch.store.studies import optuna_storage

DISTRIBUTIONS = {
    "placement": CategoricalDistribution(["bn-act-drop", "act", None]),
    "dropout": FloatDistribution(0.0, 0.6),
    "bn_momentum": FloatDistribution(0.01, 0.5, log=True),
    "width": IntDistribution(16, 256, step=16),
}


def template(i: int, user_attrs: dict[str, object] | None = None) -> FrozenTrial:
    params = {"placement": ["bn-act-drop", "act", None][i % 3], "dropout": 0.1 * (i % 6),
              "bn_momentum": 0.01 * (i + 1), "width": 16 * (1 + i % 16)}
    return FrozenTrial(number=0, state=TrialState.RUNNING, value=None, values=None,
                       datetime_start=dt.datetime(2026, 11, 22, 8, i % 60, 3, 250_000), datetime_complete=None,
                       params=params, distributions=DISTRIBUTIONS, user_attrs=user_attrs or {}, system_attrs={},
                       intermediate_values={}, trial_id=0)


def comparable(trial: FrozenTrial) -> tuple[object, ...]:
    return (trial.number, trial.state, trial.params, trial.distributions, trial.user_attrs, trial.system_attrs,
            trial.datetime_start, trial.datetime_complete, trial.values, trial.intermediate_values)


def test_the_record_reads_back_as_optunas_own_write(db: Database) -> None:
    storage = optuna_storage(db.url)
    theirs = optuna.create_study(study_name="theirs", storage=storage)
    ours = optuna.load_study(study_name=optuna.create_study(study_name="ours", storage=storage).study_name,
                             storage=storage)
    attrs = [None, {"regsearch_confirm_of": 3, "regsearch_seed": 7}, None, {"note": "x"}]
    for i in range(8):
        storage.create_new_trial(theirs._study_id, template_trial=template(i, attrs[i % 4]))
        number, trial_id = create_running_trial(db.engine, ours._study_id, template(i, attrs[i % 4]))
        assert number == i
        assert storage.get_trial(trial_id).number == i
    # Through the cached storage a loaded study reads: the new trials are seen there too.
    assert [comparable(t) for t in ours.get_trials(deepcopy=False)] == [comparable(t) for t in theirs.trials]
    assert [t.number for t in ours.get_trials(states=(TrialState.RUNNING,))] == list(range(8))


def test_numbers_stay_consecutive_when_optuna_and_the_coordinator_both_add_trials(db: Database) -> None:
    storage = optuna_storage(db.url)
    study = optuna.create_study(study_name="mixed", storage=storage)
    numbers = []
    for i in range(6):
        if i % 2:
            numbers.append(storage.get_trial(storage.create_new_trial(study._study_id, template_trial=template(i))).number)
        else:
            numbers.append(create_running_trial(db.engine, study._study_id, template(i))[0])
    assert numbers == list(range(6))
    # Optuna can finish what the coordinator created.
    study.tell(0, 0.5)
    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 0.5


def test_the_record_write_takes_five_round_trips(pg_db: Database) -> None:
    """Begin, lock the study, insert the trial (numbered inside the INSERT), insert its
    parameters, commit: where ``create_new_trial`` took ~20."""
    from sqlalchemy import event

    storage = optuna_storage(pg_db.url)
    study = optuna.create_study(study_name="count", storage=storage)
    create_running_trial(pg_db.engine, study._study_id, template(0))  # connects, prepares
    statements: list[str] = []
    event.listen(pg_db.engine, "before_cursor_execute", lambda *args: statements.append(args[2].split()[0]))
    assert create_running_trial(pg_db.engine, study._study_id, template(1))[0] == 1
    assert statements == ["SELECT", "INSERT", "INSERT"], statements  # plus BEGIN and COMMIT


def test_an_unreachable_record_is_a_store_outage_not_a_job_error() -> None:
    """An outage raises StoreUnavailable, which the coordinator's tick waits out, instead of an
    error counted against the job."""
    from sqlalchemy import create_engine

    unreachable = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nothing", connect_args={"connect_timeout": 2})
    with pytest.raises(StoreUnavailable):
        create_running_trial(unreachable, 1, template(0))


@pytest.mark.parametrize(("state", "values"), [(TrialState.COMPLETE, [0.75]), (TrialState.COMPLETE, [0.5, float("inf")]),
                                               (TrialState.PRUNED, None), (TrialState.FAIL, None)])
def test_an_outcome_reads_back_as_optunas_own_tell(db: Database, state: TrialState, values: list[float] | None) -> None:
    from regsearch.store.optuna_record import finish_running_trial

    storage = optuna_storage(db.url)
    directions = ["maximize"] * (len(values) if values else 1)
    theirs = optuna.create_study(study_name="theirs", storage=storage, directions=directions)
    ours = optuna.create_study(study_name="ours", storage=storage, directions=directions)
    their_id = storage.create_new_trial(theirs._study_id, template_trial=template(0))
    our_id = create_running_trial(db.engine, ours._study_id, template(0))[1]
    storage.set_trial_state_values(their_id, state, values)
    with db.session() as session:
        assert finish_running_trial(session, our_id, state, values)
    theirs_read, ours_read = storage.get_trial(their_id), storage.get_trial(our_id)
    assert ours_read.datetime_complete is not None and ours_read.datetime_complete >= ours_read.datetime_start
    assert (ours_read.state, ours_read.values) == (theirs_read.state, theirs_read.values)
    with db.session() as session:
        assert not finish_running_trial(session, our_id, TrialState.FAIL, None), "a finished trial stays as it is"
    assert storage.get_trial(our_id).state == state


def test_the_coordinator_ends_a_trial_through_the_same_write_in_its_own_transaction(db: Database) -> None:
    """The mirror and a job the coordinator gives up on pass an engine and our own state; the write
    is the worker's, in a transaction of its own, and ends a trial once."""
    from regsearch.domain.states import TrialState as OurState
    from regsearch.store.optuna_record import finish_running_trial

    study = optuna.create_study(study_name="ended", storage=optuna_storage(db.url))
    first = create_running_trial(db.engine, study._study_id, template(0))[1]
    second = create_running_trial(db.engine, study._study_id, template(1))[1]
    assert finish_running_trial(db.engine, first, OurState.CANCELLED, None)  # Optuna has no cancelled: FAIL
    assert finish_running_trial(db.engine, second, "complete", [0.5])
    assert not finish_running_trial(db.engine, first, OurState.PRUNED, None), "an ended trial stays as it is"
    storage = optuna_storage(db.url)
    assert (storage.get_trial(first).state, storage.get_trial(first).values) == (TrialState.FAIL, None)
    assert (storage.get_trial(second).state, storage.get_trial(second).values) == (TrialState.COMPLETE, [0.5])


def test_a_complete_end_without_values_is_refused(db: Database) -> None:
    """regsearch.domain.trial_end turns such a trial into a failure before it gets here."""
    from regsearch.store.optuna_record import finish_running_trial

    study = optuna.create_study(study_name="refused", storage=optuna_storage(db.url))
    trial_id = create_running_trial(db.engine, study._study_id, template(0))[1]
    with pytest.raises(ValueError, match="COMPLETE outcome needs the objective's values"):
        finish_running_trial(db.engine, trial_id, TrialState.COMPLETE, None)
    assert optuna_storage(db.url).get_trial(trial_id).state == TrialState.RUNNING
