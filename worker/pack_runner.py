"""A pack on a worker: the trial it claimed and up to ``budget.pack - 1`` queued trials of the same
structure, trained as one packed model (:mod:`regsearch.worker.packed`), each member ending as
an unpacked trial ends.

Per member, exactly as :func:`regsearch.worker.runner.run_trial` does for one trial: its own
claim and lease (:mod:`regsearch.store.packs`), heartbeat thread, :class:`EpochReporter` (its
epochs, its pruner, its cancel and lease checks), training seed, result row, Optuna record and
weights (:func:`regsearch.worker.runner.conclude`). A member that is pruned, cancelled or loses
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
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import StopReason, TrialState, WeightsState
from regsearch.store.db import Database
from regsearch.store.packs import claim_companions
from regsearch.store.retry import with_retry
from regsearch.store.trials import Claim
from regsearch.worker import runner
from regsearch.worker import weights as trial_weights
from regsearch.worker.runner import (
    EpochReporter,
    Heartbeat,
    conclude,
    job_pruner,
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
                end = _member_end(db, settings, claims[i], specs[i], reporters[i], recipes[i], result, failure)
                outcomes[i] = _conclude_member(db, settings, end, on_finished)
            except Exception as exc:  # the others still end; raised after them
                log.exception("trial %d: its result could not be written", claims[i].trial_id)
                errors.append(exc)

        try:
            runner._record_data(db, claims[0].job_id, splits)
            train_packed(recipes, specs[0].training, runner._on_device(splits, torch_device),
                         [s.training.seed for s in specs], on_epoch=lambda i, m: reporters[i](m),
                         on_result=end_member)
        except Exception as exc:  # noqa: BLE001 - every member still training fails alike, as one trial would
            failure = runner.classify_failure(exc, db, claims[0])
            for i in range(len(claims)):
                if i not in ended:
                    end_member(i, None, failure)
    if errors:  # as for a lone trial whose result cannot be written: the reaper meets its row
        raise errors[0]
    return [outcomes[i] for i in range(len(claims))]


def _member_end(db: Database, settings: Settings, claim: Claim, spec: JobSpec, reporter: EpochReporter,
                recipe: dict[str, Any], result: Any, failure: tuple[str, bool] | None) -> dict[str, Any]:
    """How one member ended (not yet written): its state, metrics, error and weights."""
    from regsearch.worker.train import NonFiniteLossError

    end: dict[str, Any] = {"claim": claim, "spec": spec, "reporter": reporter, "state": TrialState.FAILED,
                           "metrics": None, "error": None, "retryable": False, "weights": None}
    if failure is not None:
        end["error"], end["retryable"] = failure
        return end
    if isinstance(result, NonFiniteLossError):
        end["error"] = f"{type(result).__name__}: {result}"  # deterministic, as for a lone trial
        return end
    end["metrics"] = result.summary
    if reporter.stop_reason == StopReason.DRAINING:
        end["state"] = None  # released, not ended
        return end
    end["state"], end["error"] = runner._outcome(spec, reporter.stop_reason, result.summary)
    if end["state"] == TrialState.COMPLETE:
        end["weights"] = trial_weights.save_trial_weights(db, settings, claim, spec, result.best_state, recipe,
                                                          result.summary)
    return end


def _conclude_member(db: Database, settings: Settings, end: dict[str, Any],
                     on_finished: Callable[[str], None] | None) -> dict[str, Any]:
    claim: Claim = end["claim"]
    if end["state"] is None:
        return runner.release(db, claim, on_finished)
    weights: WeightsState | None = end["weights"]
    return conclude(db, settings, claim, end["spec"], end["reporter"], state=end["state"], metrics=end["metrics"],
                    error=end["error"], retryable=end["retryable"], weights=weights, on_finished=on_finished)
