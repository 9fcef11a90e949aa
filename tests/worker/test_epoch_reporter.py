"""The worker's per-epoch callback writes epochs in batches, and never just before the result."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import validate_spec
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.models import Epoch
from regsearch.store.pruning import NoPruning
from regsearch.worker.reporter import EpochReporter, Heartbeat

SPEC = validate_spec({"name": "r", "dataset": {"name": "digits"}, "training": {"epochs": 4}, "pruner": "median"})


class PruneAt:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def should_prune(self, number: int, history: Mapping[int, float]) -> bool:
        return max(history) >= self.epoch


def reporter_for(db: Database, pruner: object, number: int) -> EpochReporter:
    job = job_store.create_job(db, spec=SPEC).job
    trial_id = trial_store.add_trial(db, job_id=job.id, number=number, optuna_trial_id=number + 1, params={"placement": "act"})
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    heartbeat = Heartbeat(db, claim, interval_s=60)  # not started: the reporter only reads its flags
    return EpochReporter(db, claim, SPEC, pruner, heartbeat, flush_every_s=0.0)  # type: ignore[arg-type]


def written(db: Database, reporter: EpochReporter) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).where(Epoch.trial_id == reporter.claim.trial_id)) or 0)


def epoch(n: int) -> EpochMetrics:
    return EpochMetrics(epoch=n, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.1 * n, seconds=0.01)


def test_epochs_go_out_while_training_goes_on_but_the_last_waits_for_the_result(sqlite_db: Database) -> None:
    reporter = reporter_for(sqlite_db, NoPruning(), 0)
    for n in range(1, 4):
        assert reporter(epoch(n)) is False
        assert written(sqlite_db, reporter) == n and reporter.unwritten == []
    assert reporter(epoch(4)) is False  # the last epoch: finish() writes it with the result
    assert written(sqlite_db, reporter) == 3 and [e.epoch for e in reporter.unwritten] == [4]


def test_a_pruned_trial_leaves_its_last_epoch_to_the_result(sqlite_db: Database) -> None:
    reporter = reporter_for(sqlite_db, PruneAt(2), 1)
    assert reporter(epoch(1)) is False
    assert reporter(epoch(2)) is True and reporter.stop_reason == "pruned"
    assert written(sqlite_db, reporter) == 1 and [e.epoch for e in reporter.unwritten] == [2]
