"""One trial on a worker, from claim to result: the glue between the store, Optuna and the trainer.

Order matters for "nothing lost": claim (atomic) -> recipe -> epochs (upserted in batches, a
heartbeat beside them) -> the summary written to the trial row and the outcome to Optuna's
record, in one transaction. A worker that lost its lease (reaped as dead, then came back) keeps
its result aside as superseded and tells Optuna nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regsearch.config import Settings
from regsearch.domain.space import make_recipe, training_for
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import StopReason, TrialState, WeightsState, optuna_state
from regsearch.domain.trial_end import Outcome, trial_end
from regsearch.store import job_data
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.pruning import Pruner, make_pruner
from regsearch.store.retry import with_retry
from regsearch.store.trials import Claim, OptunaOutcome
from regsearch.worker import weights as trial_weights
from regsearch.worker.reporter import EpochReporter, Heartbeat

log = logging.getLogger("regsearch.worker")


@functools.lru_cache(maxsize=4)
def _database(url: str) -> Database:
    """One engine per worker process (created after the fork, never inherited).

    No checkout ping: every store call of the worker goes through ``with_retry``, which
    reconnects after a database restart, and a trial makes several transactions."""
    return Database(url, pre_ping=False)


_DEVICE_DATA: dict[tuple[int, str], Any] = {}
_DATA_RECORDED: set[str] = set()  # jobs whose data this process has written on the job row


def device_data(splits: Any, device: Any) -> Any:
    """The dataset's tensors on ``device``, moved once per worker process and kept there."""
    from regsearch.worker.train import to_device

    key = (id(splits), str(device))  # load_dataset_cached returns the same object per spec
    held = _DEVICE_DATA.get(key)
    if held is None or held[0] is not splits:
        _DEVICE_DATA.clear()  # one dataset at a time on the device is plenty
        held = _DEVICE_DATA[key] = (splits, to_device(splits, device))
    return held[1]


def record_data(db: Database, job_id: str, splits: Any) -> None:
    """Write the job's data summary on its row, once per job and process."""
    if job_id not in _DATA_RECORDED:
        with_retry(lambda: job_data.record_data(db, job_id=job_id, data=splits.summary()),
                   what=f"recording job {job_id}'s data")
        _DATA_RECORDED.add(job_id)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


def run_trial(trial_id: int, settings: Settings, device: str = "auto",
              on_finished: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Claim and train one trial; a duplicate delivery returns at once without training.

    ``on_finished(job_id)`` runs once the trial left ``running`` (a result committed, a release
    or a superseded result), in a background thread: the task returns and the worker takes
    its next trial meanwhile.
    """
    db = _database(settings.sqlalchemy_url)

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
        from regsearch.worker.pack_runner import try_pack

        ends = try_pack(db, settings, claim, spec, torch_device, on_finished)
        if ends is not None:
            return {**ends[0], "pack": [end["trial_id"] for end in ends]}
    reporter: EpochReporter | None = None
    with Heartbeat(db, claim, settings.heartbeat_interval_s) as heartbeat:
        try:
            splits = load_dataset_cached(spec.dataset, settings.data_dir)
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


@functools.lru_cache(maxsize=8)
def job_pruner(url: str, job_id: str, study_name: str, spec_json: str) -> Pruner:
    """The job's pruner, kept warm across the trials this process runs.

    The median pruner's cache only ever grows by newer completions, so one built for an earlier
    trial of the job stays right; a new one per trial would re-read every completion of the job
    on its first check (100,000 rows at 5,000 trials of 20 epochs).
    """
    return make_pruner(_database(url), JobSpec.model_validate_json(spec_json), job_id, study_name)


def run_spec(claim: Claim) -> JobSpec:
    """The spec this run trains with: a confirmation run keeps the search's configuration and data
    split but trains with its own seed, to its last epoch (never pruned: its spread is the point)."""
    spec = training_for(JobSpec.model_validate(claim.spec), claim.params)  # a searched lr / weight_decay
    if claim.confirm_of is None:
        return spec
    training = spec.training.model_copy(update={"seed": claim.seed if claim.seed is not None else spec.training.seed})
    return spec.model_copy(update={"training": training, "pruner": "none"})


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
