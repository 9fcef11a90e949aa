"""The study coordinator: keeps each active job's trials in flight and its books straight.

One tick, per active job, in this order (each step is safe to repeat after a crash, because
the coordinator restarts from the database alone):

1. cancel    a cancelled job's queued trials fail; the job ends when nothing runs.
2. sync      Optuna trials still RUNNING whose row is final are told; Optuna trials with no
             row (the coordinator died between ask and commit) get a failed, retryable row.
3. reap      running trials whose heartbeat is older than the grace period fail (retryable).
4. retry     retryable failures under ``budget.max_retries`` run again as a new attempt
             with the same parameters (``enqueue_trial`` + ``ask``).
5. resend    queued trials never sent, or sent long ago and still unclaimed, are sent again
             (the claim step makes duplicates harmless).
6. fill      ``ask`` new trials until ``budget.parallelism`` are in flight or the budget is used.
7. finish    no trial in flight and the budget used (or the timeout passed): job completed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from regsearch import failpoints, studies
from regsearch.config import Settings
from regsearch.queue import DEFAULT_QUEUE, TrialQueue
from regsearch.space import suggest_params
from regsearch.spec import JobSpec
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database, StoreUnavailable
from regsearch.store.models import FINAL_TRIAL_STATES, Job, Trial, as_utc, utcnow

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("regsearch.coordinator")

Clock = Callable[[], dt.datetime]


class Coordinator:
    """Drives every active job one step per :meth:`tick`."""

    def __init__(self, db: Database, queue: TrialQueue, settings: Settings, clock: Clock = utcnow) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self._studies: dict[str, optuna.Study] = {}  # warm per job: the sampler keeps its state

    # -- loop ---------------------------------------------------------------------------
    def tick(self) -> int:
        """One pass over the active jobs; returns how many there were."""
        active = job_store.active_jobs(self.db)
        for job in active:
            try:
                self.step(job)
            except StoreUnavailable as exc:
                log.warning("job %s: database unavailable, retrying next tick (%s)", job.id, exc)
        for job_id in set(self._studies) - {j.id for j in active}:
            self._studies.pop(job_id, None)
        return len(active)

    def run(self, stop: threading.Event) -> None:
        log.info("coordinator started (poll every %.2fs)", self.settings.coordinator_poll_s)
        while not stop.is_set():
            try:
                self.tick()
            except StoreUnavailable as exc:
                log.warning("database unavailable: %s", exc)
            except Exception:  # keep coordinating other jobs; the traceback goes to the log
                log.exception("coordinator tick failed")
            stop.wait(self.settings.coordinator_poll_s)

    # -- one job ------------------------------------------------------------------------
    def step(self, job: Job) -> None:
        spec = JobSpec.model_validate(job.spec)
        if job.status == "queued":
            job_store.set_job_status(self.db, job_id=job.id, status="running")
            job.started_at = self.clock()
        study = self._study(job, spec)
        rows = trial_store.job_trials(self.db, job_id=job.id)
        self._sync_optuna(job, study, rows)
        if job.cancel_requested:
            self._cancel(job, study)
            return
        self._reap(job, study, allow_retry=True)
        rows = trial_store.job_trials(self.db, job_id=job.id)
        self._retry(job, spec, study, rows)
        rows = trial_store.job_trials(self.db, job_id=job.id)
        self._resend(rows)
        self._fill(job, spec, study, rows)

    def _study(self, job: Job, spec: JobSpec) -> optuna.Study:
        study = self._studies.get(job.id)
        if study is None:
            study = studies.load_study(self.db.url, job.study_name, spec)
            self._studies[job.id] = study
        return study

    def _sync_optuna(self, job: Job, study: optuna.Study, rows: list[Trial]) -> None:
        from optuna.trial import TrialState

        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        by_number = {row.number: row for row in rows}
        for frozen in running:
            row = by_number.get(frozen.number)
            if row is None:
                # Asked, but the coordinator stopped before the row was committed.
                self._tell(study, frozen.number, None, "fail")
                row_id = trial_store.add_trial(self.db, job_id=job.id, number=frozen.number,
                                               optuna_trial_id=frozen._trial_id, params=dict(frozen.params))
                trial_store.fail_queued(self.db, trial_id=row_id, retryable=True,
                                        reason="coordinator stopped before the trial was enqueued")
            elif row.state in FINAL_TRIAL_STATES:
                # The worker wrote its result but died before telling Optuna.
                self._tell(study, row.number, self._values(JobSpec.model_validate(job.spec), row), row.state)

    def _cancel(self, job: Job, study: optuna.Study) -> None:
        for row in trial_store.job_trials(self.db, job_id=job.id):
            if row.state == "queued" and trial_store.fail_queued(self.db, trial_id=row.id, reason="job cancelled"):
                self._tell(study, row.number, None, "fail")
        self._reap(job, study, allow_retry=False)
        if not any(r.state in ("queued", "running") for r in trial_store.job_trials(self.db, job_id=job.id)):
            job_store.set_job_status(self.db, job_id=job.id, status="cancelled")
            log.info("job %s cancelled", job.id)

    def _reap(self, job: Job, study: optuna.Study, *, allow_retry: bool) -> None:
        grace = self.settings.heartbeat_grace_s
        cutoff = self.clock() - dt.timedelta(seconds=grace)
        for row in trial_store.stale_running(self.db, job_id=job.id, older_than=cutoff):
            reason = f"worker lost: no heartbeat from {row.worker or 'the worker'} for more than {grace:g}s"
            if trial_store.fail_stale(self.db, trial_id=row.id, older_than=cutoff, reason=reason, retryable=allow_retry):
                log.warning("job %s trial %d: %s", job.id, row.number, reason)
                self._tell(study, row.number, None, "fail")

    def _retry(self, job: Job, spec: JobSpec, study: optuna.Study, rows: list[Trial]) -> None:
        for row in rows:
            if row.state != "failed" or row.retried or not row.retryable:
                continue
            if row.attempt > spec.budget.max_retries:
                continue
            if not trial_store.mark_retried(self.db, trial_id=row.id):
                continue
            study.enqueue_trial(dict(row.params))
            self._ask_and_send(job, spec, study, attempt=row.attempt + 1, retry_of=row.number)
            log.info("job %s trial %d: retrying as attempt %d", job.id, row.number, row.attempt + 1)

    def _resend(self, rows: list[Trial]) -> None:
        now = self.clock()
        due = []
        for row in rows:
            if row.state != "queued":
                continue
            sent = as_utc(row.enqueued_at)
            backoff = self.settings.resend_after_s * 2 ** min(max(row.send_count - 1, 0), 5)
            if sent is None or (now - sent).total_seconds() > backoff:
                due.append(row)
        for row in due:
            self.queue.send(row.id, self._queue_name())
        trial_store.mark_sent(self.db, trial_ids=[r.id for r in due])

    def _fill(self, job: Job, spec: JobSpec, study: optuna.Study, rows: list[Trial]) -> None:
        in_flight = sum(1 for r in rows if r.state in ("queued", "running"))
        asked = sum(1 for r in rows if r.retry_of is None)
        timed_out = self._timed_out(job, spec)
        while not timed_out and in_flight < spec.budget.parallelism and asked < spec.budget.n_trials:
            self._ask_and_send(job, spec, study)
            in_flight += 1
            asked += 1
        if in_flight == 0 and (asked >= spec.budget.n_trials or timed_out):
            self._finish(job, rows)

    def _ask_and_send(self, job: Job, spec: JobSpec, study: optuna.Study, *, attempt: int = 1,
                      retry_of: int | None = None) -> None:
        trial = study.ask()
        params = suggest_params(trial, spec)
        failpoints.hit("coordinator.after_ask")
        trial_id = trial_store.add_trial(self.db, job_id=job.id, number=trial.number,
                                         optuna_trial_id=trial._trial_id, params=params,
                                         attempt=attempt, retry_of=retry_of)
        failpoints.hit("coordinator.after_commit")
        self.queue.send(trial_id, self._queue_name())
        trial_store.mark_sent(self.db, trial_ids=[trial_id])

    def _finish(self, job: Job, rows: list[Trial]) -> None:
        final = [r for r in rows if r.state in FINAL_TRIAL_STATES and not r.retried]
        if final and all(r.state == "failed" for r in final):
            first = next((r.error for r in final if r.error), "unknown error")
            job_store.set_job_status(self.db, job_id=job.id, status="failed",
                                     error=f"all {len(final)} trials failed; first error: {first}")
        else:
            job_store.set_job_status(self.db, job_id=job.id, status="completed")
        self._studies.pop(job.id, None)
        log.info("job %s finished", job.id)

    # -- helpers ------------------------------------------------------------------------
    def _timed_out(self, job: Job, spec: JobSpec) -> bool:
        started = as_utc(job.started_at)
        if spec.budget.timeout_s is None or started is None:
            return False
        return (self.clock() - started).total_seconds() > spec.budget.timeout_s

    def _queue_name(self) -> str:
        return DEFAULT_QUEUE

    @staticmethod
    def _values(spec: JobSpec, row: Trial) -> list[float] | None:
        metrics = row.metrics or {}
        values = [metrics.get(m) for m in spec.objective.metrics]
        return None if any(not isinstance(v, (int, float)) for v in values) else [float(v) for v in values]  # type: ignore[arg-type]

    @staticmethod
    def _tell(study: optuna.Study, number: int, values: list[float] | None, state: str) -> None:
        from optuna.trial import TrialState

        if state == "complete" and values is not None:
            study.tell(number, values, skip_if_finished=True)
        elif state == "pruned":
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def run_coordinator(settings: Settings, stop: threading.Event | None = None) -> None:
    """The ``regsearch coordinator`` process: migrate, then tick until stopped."""
    from regsearch.queue import make_celery
    from regsearch.store.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    coordinator = Coordinator(db, TrialQueue(make_celery(settings)), settings)
    stop = stop or threading.Event()
    try:
        coordinator.run(stop)
    finally:
        db.dispose()
