"""How a trial ends on this worker, a lone trial and a pack's member alike: the end is decided
once (:class:`TrialEnd`, from :func:`trained_end` or :func:`failed_end`) and written once
(:func:`conclude`): the result, its last epochs and Optuna's record in one transaction, then the
coordinator is told from a background thread and the weights are evicted. A worker that lost its
lease (reaped as dead, then came back) keeps its result aside as superseded and tells Optuna
nothing; a trial its worker's shutdown stopped goes back to the queue, unended.

``regsearch.worker.runner`` and ``regsearch.worker.pack_runner`` both end trials here; neither
imports the other's helpers, so the imports run one way (runner -> pack_runner -> this module).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regsearch.config import Settings
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import StopReason, TrialState, WeightsState, optuna_state
from regsearch.domain.trial_end import Outcome, trial_end
from regsearch.store import job_data
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.retry import with_retry
from regsearch.store.trials import Claim, OptunaOutcome
from regsearch.worker import weights as trial_weights
from regsearch.worker.reporter import EpochReporter

log = logging.getLogger("regsearch.worker")


@dataclass
class TrialEnd:
    """How a trial ended on this worker, not yet written: what :func:`conclude` writes.

    ``outcome`` is ``regsearch.domain.trial_end``'s decision, or ``queued`` for a trial its
    worker's shutdown stopped (:attr:`released`: it goes back to the queue, unended).
    """

    claim: Claim
    spec: JobSpec
    reporter: EpochReporter | None
    outcome: Outcome
    metrics: dict[str, Any] | None = None
    retryable: bool = False
    weights: WeightsState | None = None  # a complete trial's, saved before its result is written

    @property
    def released(self) -> bool:
        return self.outcome.state == TrialState.QUEUED


def trained_end(db: Database, settings: Settings, claim: Claim, spec: JobSpec, reporter: EpochReporter,
                recipe: dict[str, Any], result: Any) -> TrialEnd:
    """The end of a trial that trained (alone, or as a pack's member): released when its worker
    drains, else as ``trial_end`` decides from why it stopped and what it measured; a complete
    trial's weights are saved here, before its result is written."""
    if reporter.stop_reason == StopReason.DRAINING:
        return TrialEnd(claim, spec, reporter, Outcome(TrialState.QUEUED), metrics=result.summary)
    outcome = trial_end(reporter.stop_reason, result.summary, spec.objective.metrics)
    weights = None
    if outcome.state == TrialState.COMPLETE:
        weights = trial_weights.save_trial_weights(db, settings, claim, spec, result.best_state, recipe,
                                                   result.summary)
    return TrialEnd(claim, spec, reporter, outcome, metrics=result.summary, weights=weights)


def failed_end(db: Database, claim: Claim, spec: JobSpec, reporter: EpochReporter | None,
               exc: Exception) -> TrialEnd:
    """The end of a trial whose training raised ``exc`` (:func:`classify_failure`)."""
    error, retryable = classify_failure(exc, db, claim)
    return TrialEnd(claim, spec, reporter, Outcome(TrialState.FAILED, error), retryable=retryable)


def release(db: Database, claim: Claim, on_finished: Callable[[str], None] | None) -> dict[str, Any]:
    """Give a trial stopped by this worker's shutdown back to the queue, unended."""
    released = with_retry(lambda: trial_store.release(db, trial_id=claim.trial_id, lease=claim.lease),
                          what="releasing the trial")
    log.info("trial %d released back to the queue (worker shutting down): %s", claim.trial_id, released)
    _notify(on_finished, claim.job_id)
    return {"trial_id": claim.trial_id, "job_id": claim.job_id, "outcome": "released"}


def conclude(db: Database, settings: Settings, end: TrialEnd,
             on_finished: Callable[[str], None] | None) -> dict[str, Any]:
    """Write a trial's end: its result, its last epochs and Optuna's record in one transaction,
    then notify the coordinator and evict weights (a released trial goes back to the queue
    instead); a lone trial and a pack's member end here alike."""
    claim, outcome, reporter = end.claim, end.outcome, end.reporter
    if end.released:
        return release(db, claim, on_finished)
    trial_id = claim.trial_id
    unwritten = reporter.unwritten if reporter is not None else []
    history = reporter.history if reporter is not None else None
    recipe_left = reporter.recipe if reporter is not None else None
    record = OptunaOutcome(claim.optuna_trial_id, optuna_state(outcome.state), outcome.values)
    owned = with_retry(lambda: trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=outcome.state,
                                                  metrics=end.metrics, error=outcome.error, retryable=end.retryable,
                                                  epochs=unwritten, step_values=history, recipe=recipe_left,
                                                  record=record, weights=end.weights,
                                                  retention=trial_weights.retention(end.spec)),
                       what=f"finishing trial {trial_id}")
    _notify(on_finished, claim.job_id)  # before the eviction: the coordinator need not wait for it
    trial_weights.after_result(db, settings, claim, end.weights, owned)
    if not owned:
        log.warning("trial %d finished after its lease was lost; result kept as superseded", trial_id)
        return {"trial_id": trial_id, "job_id": claim.job_id, "outcome": "superseded"}
    return {"trial_id": trial_id, "job_id": claim.job_id, "outcome": outcome.state}


def classify_failure(exc: Exception, db: Database, claim: Claim) -> tuple[str, bool]:
    """(error, retryable) of a trial that raised ``exc``. A deterministic error (the same
    configuration fails again) is not retryable; one that is the job's data's or its network's
    (an ``auto`` network not installed, whose ``make`` raises, that does not trace or has no
    slot) fails every trial of the job alike, so it ends the whole job at once."""
    from regsearch.worker.datasets import DatasetError
    from regsearch.worker.families.auto import NetworkError
    from regsearch.worker.loop import NonFiniteLossError

    error = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, (NonFiniteLossError, DatasetError, ValueError)):
        log.error("trial %d failed", claim.trial_id, exc_info=exc)  # OOM, driver errors...: may pass next time
        return error, True
    fatal = exc if isinstance(exc, (DatasetError, NetworkError)) else None
    if isinstance(exc.__cause__, NetworkError):  # auto's build failed making its network
        fatal = exc.__cause__
    if fatal is not None:
        reason = str(fatal)
        with_retry(lambda: job_data.fail_job_for_data(db, job_id=claim.job_id, reason=reason),
                   what=f"ending job {claim.job_id}")
    return error, False


def _notify(on_finished: Callable[[str], None] | None, job_id: str) -> None:
    if on_finished is not None:
        _NOTIFIER.submit(lambda: on_finished(job_id))


class _BackgroundNotifier:
    """Notifies the coordinator off the critical path: the result and Optuna's record are
    already committed, so the worker takes its next trial at once. A notice lost with the
    process costs the coordinator one poll interval."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, job: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="coordinator-notifier", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # the coordinator's poll and sync make up for it
                log.exception("notifying the coordinator failed")


_NOTIFIER = _BackgroundNotifier()
