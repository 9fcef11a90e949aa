"""Each epoch's val_acc reaches Optuna's record as the trial's intermediate value, with the epoch
rows the worker writes (one executemany more in the same transaction), and reads back as Optuna's
own ``storage.set_trial_intermediate_value`` writes it, on SQLite and PostgreSQL: so
optuna-dashboard and ``optuna.visualization.plot_intermediate_values`` show learning curves."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from sqlalchemy import event, select

from regsearch.config import Settings
from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import JobSpec
from regsearch.store import jobs as job_store
from regsearch.store import studies
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.models import Epoch
from regsearch.worker import runner

SPEC = {"name": "curves", "dataset": {"name": "digits"}, "model": {"family": "mlp", "hidden": [16]},
        "space": {"placement": ["bn-act-drop"], "dropout": 0.1, "bn_momentum": 0.1},
        "training": {"epochs": 3, "batch_size": 64, "seed": 0}, "pruner": "none"}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()  # tiny models: intra-op threads only add contention
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def queued_trial(db: Database, spec: JobSpec) -> tuple[str, int, int]:
    """A job with one trial asked from its study and queued, as the coordinator leaves it:
    (study name, trial row id, Optuna trial id)."""
    job = job_store.create_job(db, spec=spec).job
    asked = studies.load_study(db.url, job.study_name, spec).ask()
    trial_id = trial_store.add_trial(db, job_id=job.id, number=asked.number, optuna_trial_id=asked._trial_id,
                                     params={"placement": "bn-act-drop", "dropout": 0.1, "bn_momentum": 0.1})
    return job.study_name, trial_id, asked._trial_id


def optunas_own(db: Database, steps: dict[int, float]) -> dict[int, float]:
    """What Optuna itself records for these values (one ``set_trial_intermediate_value`` each)."""
    storage = studies.optuna_storage(db.url)
    study = optuna.create_study(study_name=f"theirs-{len(storage.get_all_studies())}", storage=storage)
    trial_id = storage.create_new_trial(study._study_id)
    for step, value in steps.items():
        storage.set_trial_intermediate_value(trial_id, step, value)
    return storage.get_trial(trial_id).intermediate_values


@pytest.mark.parametrize("flush", ["with the result", "every epoch"])
def test_a_real_trials_epochs_are_optunas_intermediate_values(db: Database, data_dir: Path, flush: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if flush == "every epoch":  # the batches written while training goes on, not only the result's
        monkeypatch.setattr(runner, "EpochReporter", functools.partial(runner.EpochReporter, flush_every_s=0.0))
    spec = JobSpec.model_validate(SPEC)
    study_name, trial_id, _ = queued_trial(db, spec)
    settings = Settings(data_dir=data_dir, database_url=db.url, broker_url=None, api_token=None)
    assert runner.run_trial(trial_id, settings, device="cpu")["outcome"] == "complete"

    with db.read() as session:
        epochs = {e.epoch: e.val_acc for e in session.scalars(select(Epoch).where(Epoch.trial_id == trial_id))}
    assert sorted(epochs) == [1, 2, 3]
    study = optuna.load_study(study_name=study_name, storage=studies.optuna_storage(db.url))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.intermediate_values == epochs
    assert trial.intermediate_values == optunas_own(db, epochs)
    (curve,) = optuna.visualization.plot_intermediate_values(study).data  # the learning curve Optuna draws
    assert list(curve.x) == [1, 2, 3] and list(curve.y) == [epochs[n] for n in (1, 2, 3)]


def epoch(n: int, val_acc: float) -> EpochMetrics:
    return EpochMetrics(epoch=n, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=val_acc, seconds=0.01)


def test_rewrites_non_finite_values_and_finished_trials_read_as_optunas(db: Database) -> None:
    spec = JobSpec.model_validate(SPEC)
    study_name, trial_id, optuna_id = queued_trial(db, spec)
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    storage = studies.optuna_storage(db.url)
    trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[epoch(1, 0.2), epoch(2, 0.3)])
    # An epoch written again (a batch retried) replaces its value, as Optuna's own call does.
    values = [epoch(2, float("nan")), epoch(3, float("inf")), epoch(4, float("-inf")), epoch(5, 0.75)]
    trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=values)
    ours = storage.get_trial(optuna_id).intermediate_values
    theirs = optunas_own(db, {1: 0.2, 2: 0.3, **{e.epoch: e.val_acc for e in values}})
    assert ours.keys() == theirs.keys() == {1, 2, 3, 4, 5}
    assert repr(ours) == repr(theirs)  # nan == nan is False; their reprs agree
    # A trial Optuna already finished takes no more values (Optuna's own call would raise).
    studies.load_study(db.url, study_name, spec).tell(0, state=optuna.trial.TrialState.FAIL)
    trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[epoch(6, 0.9)])
    assert 6 not in storage.get_trial(optuna_id).intermediate_values


def test_a_released_trial_starts_its_curve_again(sqlite_db: Database) -> None:
    spec = JobSpec.model_validate(SPEC)
    _, trial_id, optuna_id = queued_trial(sqlite_db, spec)
    claim = trial_store.claim(sqlite_db, trial_id=trial_id, worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    trial_store.record_epochs(sqlite_db, trial_id=trial_id, lease=claim.lease, epochs=[epoch(1, 0.2), epoch(2, 0.3)])
    assert trial_store.release(sqlite_db, trial_id=trial_id, lease=claim.lease)
    assert studies.optuna_storage(sqlite_db.url).get_trial(optuna_id).intermediate_values == {}


def test_the_values_ride_in_the_epoch_batch_one_statement_more(pg_db: Database) -> None:
    """A batch of epochs is the heartbeat, the cancel read, the epoch upsert and one executemany
    of the intermediate values: no transaction (and no round trip) per epoch."""
    spec = JobSpec.model_validate(SPEC)
    _, trial_id, optuna_id = queued_trial(pg_db, spec)
    claim = trial_store.claim(pg_db, trial_id=trial_id, worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    trial_store.record_epochs(pg_db, trial_id=trial_id, lease=claim.lease, epochs=[epoch(1, 0.1)])  # warm
    statements: list[tuple[str, bool]] = []

    def record(_conn: object, _cursor: object, statement: str, _params: object, _context: object,
               executemany: bool) -> None:
        statements.append((statement.split()[0], executemany))

    engine = pg_db._fast_engine  # record_epochs' transactions are not durable (no WAL flush wait)
    event.listen(engine, "before_cursor_execute", record)
    try:
        trial_store.record_epochs(pg_db, trial_id=trial_id, lease=claim.lease,
                                  epochs=[epoch(n, 0.1 * n) for n in range(2, 7)])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [s for s, _ in statements] == ["UPDATE", "SELECT", "INSERT", "INSERT"], statements
    assert statements[-1] == ("INSERT", True)
    assert studies.optuna_storage(pg_db.url).get_trial(optuna_id).intermediate_values == {
        n: pytest.approx(0.1 * n) for n in range(1, 7)}
