"""One trial on a worker, from claim to result: the glue between the store, Optuna and the trainer.

Order matters for "nothing lost": claim (atomic) -> recipe -> epochs (upserted in batches, a
heartbeat beside them) -> the summary written to the trial row and the outcome to Optuna's
record, in one transaction. A worker that lost its lease (reaped as dead, then came back) keeps
its result aside as superseded and tells Optuna nothing.

A packable trial goes to :mod:`regsearch.worker.pack_runner`; what a trial trains with comes from
:mod:`regsearch.worker.trial_inputs` and how it ends is written by :mod:`regsearch.worker.conclude`,
for a lone trial and a pack's member alike (the imports run one way: runner -> pack_runner -> those).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from regsearch.config import Settings
from regsearch.domain.space import make_recipe
from regsearch.store import trials as trial_store
from regsearch.store.retry import with_retry
from regsearch.worker.conclude import conclude, failed_end, trained_end
from regsearch.worker.pack_runner import try_pack
from regsearch.worker.reporter import EpochReporter, Heartbeat
from regsearch.worker.trial_inputs import (
    device_data,
    job_pruner,
    record_data,
    run_spec,
    worker_database,
    worker_name,
)

log = logging.getLogger("regsearch.worker")


def run_trial(trial_id: int, settings: Settings, device: str = "auto",
              on_finished: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Claim and train one trial; a duplicate delivery returns at once without training.

    ``on_finished(job_id)`` runs once the trial left ``running`` (a result committed, a release
    or a superseded result), in a background thread: the task returns and the worker takes
    its next trial meanwhile.
    """
    db = worker_database(settings.sqlalchemy_url)

    from regsearch.worker.datasets import input_shape_for, load_dataset_cached
    from regsearch.worker.train import select_device
    from regsearch.worker.trainers import run_trainer

    torch_device = select_device(device)
    claim = with_retry(lambda: trial_store.claim(db, trial_id=trial_id, worker=worker_name(), device=str(torch_device)),
                       what=f"claiming trial {trial_id}")
    if claim is None:
        log.info("trial %d is already claimed or finished: duplicate delivery acknowledged", trial_id)
        return {"trial_id": trial_id, "outcome": "duplicate"}
    if isinstance(claim, trial_store.Deferred):
        log.info("trial %d deferred: its job already runs its parallelism (the coordinator sends it again "
                 "when one ends)", trial_id)
        return {"trial_id": trial_id, "outcome": "deferred"}

    spec = run_spec(claim)
    if spec.budget.pack > 1:  # with queued trials of its structure, it trains in a pack
        ends = try_pack(db, settings, claim, spec, torch_device, on_finished)
        if ends is not None:
            return {**ends[0], "pack": [end["trial_id"] for end in ends]}
    reporter: EpochReporter | None = None
    with Heartbeat(db, claim, settings.heartbeat_interval_s) as heartbeat:
        try:
            splits = load_dataset_cached(spec.dataset, settings.data_dir, spec.task)
            record_data(db, claim.job_id, splits)
            recipe = make_recipe(spec, claim.params, input_shape_for(splits, spec.model), splits.n_classes)
            pruner = job_pruner(db.url, claim.job_id, claim.study_name, spec.model_dump_json())
            reporter = EpochReporter(db, claim, spec, pruner, heartbeat, recipe=recipe)
            result = run_trainer(spec, claim.params, recipe, device_data(splits, torch_device), on_epoch=reporter,
                                 report_timeout_s=settings.trainer_report_timeout_s)
            end = trained_end(db, settings, claim, spec, reporter, recipe, result)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, recorded and survived
            end = failed_end(db, claim, spec, reporter, exc)
    return conclude(db, settings, end, on_finished)
