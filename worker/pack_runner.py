"""A pack on a worker: the trial it claimed and up to ``budget.pack - 1`` queued trials of the same
structure, trained as one packed model (:mod:`regsearch.worker.packed`), each member ending as
an unpacked trial ends.

Per member, exactly as :func:`regsearch.worker.runner.run_trial` does for one trial: its own
claim and lease (:mod:`regsearch.store.packs`), heartbeat thread, :class:`EpochReporter` (its
epochs, its pruner, its cancel and lease checks), training seed, result row, Optuna record and
weights (:func:`regsearch.worker.conclude.conclude`). A member that is pruned, cancelled or loses
its lease leaves the pack at that epoch (its compute is reclaimed; the others go on) and ends
there: its heartbeat stops, its result is written and the coordinator is told, so the job's next
trial can start while the pack trains on. A process that dies takes every member's heartbeat
with it, so the reaper fails each for retry, as it does a lone trial.

A pack forms only when the structure has a packed form (``can_pack``) and companions are queued;
otherwise the claimed trial trains alone, on the usual path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from regsearch.config import Settings
from regsearch.domain.packing import pack_declined
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState
from regsearch.domain.trial_end import Outcome
from regsearch.store.db import Database
from regsearch.store.packs import claim_companions
from regsearch.store.retry import with_retry
from regsearch.store.trials import Claim
from regsearch.worker.conclude import TrialEnd, classify_failure, conclude, failed_end, trained_end
from regsearch.worker.reporter import EpochReporter, Heartbeat
from regsearch.worker.trial_inputs import (
    device_data,
    job_pruner,
    record_data,
    run_spec,
    worker_name,
)

log = logging.getLogger("regsearch.worker")


def try_pack(db: Database, settings: Settings, first: Claim, spec: JobSpec, torch_device: Any,
             on_finished: Callable[[str], None] | None) -> list[dict[str, Any]] | None:
    """Train ``first`` with the companions it can claim; None (nothing claimed) when it should
    train alone: no packed form for its structure, no companion queued, or anything unusual
    before a companion was claimed (the lone path then meets it and reports it as usual)."""
    from regsearch.worker.datasets import input_shape_for, load_dataset_cached
    from regsearch.worker.packed import can_pack

    declined = pack_declined(pruner=spec.pruner, device=str(torch_device))
    if declined is not None:  # regsearch.domain.packing: where a pack pays
        log.info("trial %d trains alone: %s", first.trial_id, declined)
        return None
    try:
        splits = load_dataset_cached(spec.dataset, settings.data_dir)
        recipe = make_recipe(spec, first.params, input_shape_for(splits, spec.model), splits.n_classes)
        if not can_pack([recipe]):
            log.info("trial %d trains alone: its structure has no packed form", first.trial_id)
            return None
    except Exception as exc:  # noqa: BLE001 - the lone path meets it again and reports it
        log.info("trial %d trains alone: %s: %s", first.trial_id, type(exc).__name__, exc)
        return None
    companions = with_retry(
        lambda: claim_companions(db, first=first, worker=worker_name(), device=str(torch_device), k=spec.budget.pack),
        what=f"claiming companions of trial {first.trial_id}")
    if not companions:
        log.info("trial %d trains alone: no queued trial of its structure (or the job is at its parallelism)",
                 first.trial_id)
        return None
    return run_pack(db, settings, [first, *companions], splits, torch_device, on_finished)


def run_pack(db: Database, settings: Settings, claims: list[Claim], splits: Any, torch_device: Any,
             on_finished: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Train the claimed members as one pack and end each; their outcomes, in claim order."""
    from regsearch.worker.datasets import input_shape_for
    from regsearch.worker.packed import train_packed

    specs = [run_spec(c) for c in claims]
    shape = input_shape_for(splits, specs[0].model)
    recipes = [make_recipe(s, c.params, shape, splits.n_classes) for s, c in zip(specs, claims, strict=True)]
    log.info("trials %s of job %s train as one pack", [c.number for c in claims], claims[0].job_id)
    ended: set[int] = set()  # members whose end was attempted: none ends twice
    outcomes: dict[int, dict[str, Any]] = {}
    errors: list[Exception] = []  # a member whose result could not be written (the store is down)
    with contextlib.ExitStack() as stack:
        beats = [stack.enter_context(Heartbeat(db, c, settings.heartbeat_interval_s)) for c in claims]
        reporters = [EpochReporter(db, c, s, job_pruner(db.url, c.job_id, c.study_name, s.model_dump_json()), b,
                                   recipe=r)
                     for c, s, b, r in zip(claims, specs, beats, recipes, strict=True)]

        def end_member(i: int, result: Any, failure: tuple[str, bool] | None = None) -> None:
            """Member ``i`` ends now, as a lone trial ends, whatever the rest of the pack does."""
            beats[i].stop()
            ended.add(i)
            try:
                outcomes[i] = conclude(db, settings, member_end(i, result, failure), on_finished)
            except Exception as exc:  # the others still end; raised after them
                log.exception("trial %d: its result could not be written", claims[i].trial_id)
                errors.append(exc)

        def member_end(i: int, result: Any, failure: tuple[str, bool] | None) -> TrialEnd:
            """How member ``i`` ended (not yet written): the pack failed, its own loss became
            non-finite (``result`` is the error a lone trial raises), or it trained."""
            if failure is not None:
                error, retryable = failure
                return TrialEnd(claims[i], specs[i], reporters[i], Outcome(TrialState.FAILED, error),
                                retryable=retryable)
            if isinstance(result, Exception):
                return failed_end(db, claims[i], specs[i], reporters[i], result)
            return trained_end(db, settings, claims[i], specs[i], reporters[i], recipes[i], result)

        try:
            record_data(db, claims[0].job_id, splits)
            train_packed(recipes, specs[0].training, device_data(splits, torch_device),
                         [s.training.seed for s in specs], on_epoch=lambda i, m: reporters[i](m),
                         on_result=end_member)
        except Exception as exc:  # noqa: BLE001 - every member still training fails alike, as one trial would
            failure = classify_failure(exc, db, claims[0])
            for i in range(len(claims)):
                if i not in ended:
                    end_member(i, None, failure)
    if errors:  # as for a lone trial whose result cannot be written: the reaper meets its row
        raise errors[0]
    return [outcomes[i] for i in range(len(claims))]
