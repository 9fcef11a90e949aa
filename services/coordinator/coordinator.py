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
7. confirm   the search budget used and nothing in flight: with ``confirm`` in the spec, the
             top-k configurations run again with extra training seeds as ordinary trials
             (``confirm_of`` set), created once each (:func:`regsearch.domain.confirm.confirmation_plan`).
8. finish    no trial in flight, the budget used and every confirmation run created (or the
             timeout passed): job completed.

Steps 2-5 are maintenance and run at most every ``MAINTENANCE_EVERY_S``; filling and finishing
run on every tick, and a tick runs as soon as a worker reports a finished trial (events), so
workers do not idle for a poll interval between trials. Sampling happens on an in-memory
mirror of the study (:mod:`regsearch.services.coordinator.mirror`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from regsearch import failpoints

from regsearch.store import studies
from regsearch.config import Settings
from regsearch.domain.confirm import confirmation_plan
from regsearch.messaging.events import EventListener
from regsearch.messaging.queue import DEFAULT_QUEUE, TrialQueue
from regsearch.store.retry import is_transient
from regsearch.domain.spec import JobSpec
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database, StoreUnavailable
from regsearch.store.jobs import trial_dict
from regsearch.store.models import FINAL_TRIAL_STATES, Job, Trial, as_utc, utcnow
from regsearch.services.coordinator.mirror import StudyMirror
from regsearch.services.coordinator.rows import JobRows

log = logging.getLogger("regsearch.coordinator")
MAINTENANCE_EVERY_S = 1.0
FAIL_JOB_AFTER = 5  # consecutive failing ticks of one job before the job is failed

Clock = Callable[[], dt.datetime]


class Coordinator:
    """Drives every active job one step per :meth:`tick`."""

    def __init__(self, db: Database, queue: TrialQueue, settings: Settings, clock: Clock = utcnow,
                 events: EventListener | None = None) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self.events = events
        self._mirrors: dict[str, StudyMirror] = {}  # warm per job: the sampler keeps its state
        self._rows: dict[str, JobRows] = {}  # per job: the rows as last read
        self._errors: dict[str, int] = {}  # per job: consecutive ticks that raised

    # -- loop ---------------------------------------------------------------------------
    def tick(self, maintenance: bool = True) -> int:
        """One pass over the active jobs; returns how many there were."""
        active = job_store.active_jobs(self.db)
        for job in active:
            try:
                self.step(job, maintenance=maintenance)
                self._errors.pop(job.id, None)
            except Exception as exc:  # noqa: BLE001 - one job's error must not stall the others
                if is_transient(exc):  # an outage (ours or Optuna's storage) is not the job's fault
                    log.warning("job %s: database unavailable, retrying next tick (%s)", job.id, exc)
                else:
                    self._job_error(job, exc)
        for job_id in (set(self._mirrors) | set(self._rows) | set(self._errors)) - {j.id for j in active}:
            self._forget(job_id)
        return len(active)

    def run(self, stop: threading.Event) -> None:
        log.info("coordinator started (poll every %.2fs)", self.settings.coordinator_poll_s)
        last_maintenance = 0.0
        while not stop.is_set():
            now = time.monotonic()
            maintenance = now - last_maintenance >= MAINTENANCE_EVERY_S
            if maintenance:
                last_maintenance = now
            try:
                self.tick(maintenance=maintenance)
            except StoreUnavailable as exc:
                log.warning("database unavailable: %s", exc)
            except Exception:  # keep coordinating other jobs; the traceback goes to the log
                log.exception("coordinator tick failed")
            if self.events is not None:
                self.events.wait(self.settings.coordinator_poll_s)
            else:
                stop.wait(self.settings.coordinator_poll_s)

    # -- one job ------------------------------------------------------------------------
    def step(self, job: Job, *, maintenance: bool = True) -> None:
        if job.status == "queued":
            job_store.set_job_status(self.db, job_id=job.id, status="running")
            job.started_at = self.clock()
        mirror = self._mirror(job)
        spec = mirror.spec  # validated once per job, when its mirror was built
        cache = self._rows.setdefault(job.id, JobRows(self.db, job.id))
        rows = cache.refresh()
        self._tell_mirror(spec, mirror, rows)
        if maintenance or job.cancel_requested:
            if self._sync_optuna(job, mirror, rows):
                rows = cache.refresh(full=True)
            if job.cancel_requested:
                self._cancel(job, mirror, rows)
                return
            if self._reap(job, mirror, rows, allow_retry=True):
                rows = cache.refresh()
            self._resend(spec, rows)
        # Every tick: a failure owed a retry must be prepared before _fill may finish the job.
        if self._retry(job, spec, mirror, rows):
            rows = cache.refresh(full=True)  # the retried rows changed after they were final
        self._fill(job, spec, mirror, rows, cache)

    def _job_error(self, job: Job, exc: Exception) -> None:
        """Log a job's failed step; the same job failing ``FAIL_JOB_AFTER`` ticks in a row is
        failed with the error (a sampler that cannot load, say), the other jobs go on."""
        count = self._errors.get(job.id, 0) + 1
        self._errors[job.id] = count
        log.exception("job %s: coordinating failed (%d in a row)", job.id, count)
        if count >= FAIL_JOB_AFTER:
            reason = f"the coordinator could not run this job: {type(exc).__name__}: {exc}"
            job_store.request_cancel(self.db, job_id=job.id)  # running trials stop at their next epoch
            storage = studies.optuna_storage(self.db.url)
            for row in trial_store.job_trials(self.db, job_id=job.id):
                if row.state == "queued" and trial_store.fail_queued(self.db, trial_id=row.id, reason=reason):
                    with contextlib.suppress(UpdateFinishedTrialError):
                        storage.set_trial_state_values(row.optuna_trial_id, TrialState.FAIL)
            job_store.set_job_status(self.db, job_id=job.id, status="failed", error=reason)
            self._forget(job.id)

    def _forget(self, job_id: str) -> None:
        """Drop what this process keeps for a job that is no longer active."""
        self._mirrors.pop(job_id, None)
        self._rows.pop(job_id, None)
        self._errors.pop(job_id, None)

    def _mirror(self, job: Job) -> StudyMirror:
        mirror = self._mirrors.get(job.id)
        if mirror is None:
            mirror = StudyMirror(self.db, job.study_name, JobSpec.model_validate(job.spec))
            self._mirrors[job.id] = mirror
        return mirror

    def _tell_mirror(self, spec: JobSpec, mirror: StudyMirror, rows: list[Trial]) -> None:
        for row in rows:
            if row.state in FINAL_TRIAL_STATES and row.number not in mirror.told:
                mirror.tell(row.number, self._values(spec, row), row.state)
                mirror.told.add(row.number)

    def _sync_optuna(self, job: Job, mirror: StudyMirror, rows: list[Trial]) -> bool:
        """Make Optuna's record and the rows agree; True when rows were added (orphans)."""
        study = mirror.record
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        added = False
        by_number = {row.number: row for row in rows}
        for frozen in running:
            row = by_number.get(frozen.number)
            if row is None:
                # Asked, but the coordinator stopped before the row was committed.
                self._tell(mirror, frozen.number, None, "fail")
                row_id = trial_store.add_trial(self.db, job_id=job.id, number=frozen.number,
                                               optuna_trial_id=frozen._trial_id, params=dict(frozen.params))
                trial_store.fail_queued(self.db, trial_id=row_id, retryable=True,
                                        reason="coordinator stopped before the trial was enqueued")
                added = True
            elif row.state in FINAL_TRIAL_STATES:
                # A final row whose Optuna trial still runs: workers write both in one
                # transaction, so this is a row the coordinator itself ended, or one written
                # before they did.
                self._tell(mirror, row.number, self._values(mirror.spec, row), row.state)
        return added

    def _cancel(self, job: Job, mirror: StudyMirror, rows: list[Trial]) -> None:
        for row in rows:
            if row.state == "queued" and trial_store.fail_queued(self.db, trial_id=row.id, reason="job cancelled"):
                self._tell(mirror, row.number, None, "fail")
        self._reap(job, mirror, rows, allow_retry=False)
        rows = trial_store.job_trials(self.db, job_id=job.id)
        if not any(r.state in ("queued", "running") for r in rows):
            self._sync_optuna(job, mirror, rows)
            job_store.set_job_status(self.db, job_id=job.id, status="cancelled")
            log.info("job %s cancelled", job.id)

    def _reap(self, job: Job, mirror: StudyMirror, rows: list[Trial], *, allow_retry: bool) -> bool:
        """Fail running trials whose heartbeat went stale; True when any was reaped.

        ``rows`` only nominates candidates; the conditional UPDATE re-checks the heartbeat.
        """
        grace = self.settings.heartbeat_grace_s
        cutoff = self.clock() - dt.timedelta(seconds=grace)
        reaped = False
        for row in rows:
            beat = as_utc(row.heartbeat_at)
            if row.state != "running" or beat is None or beat >= cutoff:
                continue
            reason = f"worker lost: no heartbeat from {row.worker or 'the worker'} for more than {grace:g}s"
            if trial_store.fail_stale(self.db, trial_id=row.id, older_than=cutoff, reason=reason, retryable=allow_retry):
                log.warning("job %s trial %d: %s", job.id, row.number, reason)
                self._tell(mirror, row.number, None, "fail")
                reaped = True
        return reaped

    def _retry(self, job: Job, spec: JobSpec, mirror: StudyMirror, rows: list[Trial]) -> bool:
        """Run retryable failures again as new attempts; True when any was started."""
        started = False
        for row in rows:
            if row.state != "failed" or row.retried or not row.retryable:
                continue
            if row.attempt > spec.budget.max_retries:
                continue
            if not trial_store.mark_retried(self.db, trial_id=row.id):
                continue
            self._prepare(job, mirror, attempt=row.attempt + 1, retry_of=row.number, fixed_params=dict(row.params),
                          seed=row.seed, confirm_of=row.confirm_of)
            log.info("job %s trial %d: retrying as attempt %d", job.id, row.number, row.attempt + 1)
            started = True
        return started

    def _resend(self, spec: JobSpec, rows: list[Trial]) -> None:
        """Send again the messages of queued trials nobody claimed for too long (lost messages).

        While the job runs ``parallelism`` trials, its queued messages are waiting their turn
        in the broker (sent ahead), not lost: nothing is re-sent then.
        """
        if sum(1 for r in rows if r.state == "running") >= spec.budget.parallelism:
            return
        now = self.clock()
        due = []
        for row in rows:
            sent = as_utc(row.enqueued_at)
            if row.state != "queued" or sent is None:
                continue
            backoff = self.settings.resend_after_s * 2 ** min(max(row.send_count - 1, 0), 5)
            if (now - sent).total_seconds() > backoff:
                due.append(row)
        self._send(due)

    def _fill(self, job: Job, spec: JobSpec, mirror: StudyMirror, rows: list[Trial], cache: JobRows) -> None:
        """Keep ``parallelism`` trials running and ``prepare_ahead`` more waiting in the broker.

        A trial is asked, committed, marked sent, then sent. The ones beyond ``parallelism`` wait
        in the broker, so a worker that finishes a trial takes the next at once instead of waiting
        for this coordinator to react; the claim enforces ``parallelism`` per job and marks a
        refused trial unsent (``enqueued_at`` NULL), which is sent again here once a slot frees.
        The sampler sees the waiting trials as pending (constant liar).
        """
        running = sum(1 for r in rows if r.state == "running")
        in_flight = running + sum(1 for r in rows if r.state == "queued" and r.enqueued_at is not None)
        # Retries first: they are owed a run.
        unsent = sorted((r for r in rows if r.state == "queued" and r.enqueued_at is None),
                        key=lambda r: (r.retry_of is None, r.number))
        if running >= spec.budget.parallelism:
            # A trial sent before and refused was refused by an idle worker: sending it again
            # before a running trial ends would only be refused again. It keeps its place.
            held = [r for r in unsent if r.send_count > 0]
            unsent = [r for r in unsent if r.send_count == 0]
            in_flight += len(held)
        asked = sum(1 for r in rows if r.retry_of is None and r.confirm_of is None)
        timed_out = self._timed_out(job, spec)
        if timed_out:
            for row in rows:  # not started: the job's time is up (a worker holding one finds it failed)
                if row.state == "queued" and trial_store.fail_queued(
                        self.db, trial_id=row.id, reason="not started: the job's timeout passed"):
                    self._tell(mirror, row.number, None, "fail")
            rows = cache.refresh()
            in_flight = sum(1 for r in rows if r.state == "running")
            unsent = []
        capacity = spec.budget.parallelism + self.settings.prepare_ahead
        to_send = unsent[: max(0, capacity - in_flight)]
        self._send(to_send)
        in_flight += len(to_send)
        while not timed_out and asked < spec.budget.n_trials and in_flight < capacity:
            self._send_ids([self._prepare(job, mirror)])
            asked += 1
            in_flight += 1
        if in_flight == 0 and (asked >= spec.budget.n_trials or timed_out):
            rows = cache.refresh(full=True)
            if not timed_out and self._confirm(job, spec, mirror, rows):
                return  # the confirmation runs go out on the next tick, like any unsent trial
            self._sync_optuna(job, mirror, rows)  # Optuna's record agrees before the job ends
            self._finish(job, rows)

    def _confirm(self, job: Job, spec: JobSpec, mirror: StudyMirror, rows: list[Trial]) -> bool:
        """Prepare the confirmation runs still missing; True when any was prepared."""
        if spec.confirm is None:  # the spec allows confirm with a single objective only
            return False
        plan = confirmation_plan(
            [trial_dict(r) for r in rows], metric=spec.objective.metrics[0], direction=spec.directions[0],
            top_k=spec.confirm.top_k, seeds=spec.confirm.seeds, base_seed=spec.training.seed,
        )
        for run in plan:
            self._prepare(job, mirror, fixed_params=run.params, seed=run.seed, confirm_of=run.confirm_of)
        if plan:
            log.info("job %s: search done, %d confirmation runs of the top %d configurations",
                     job.id, len(plan), spec.confirm.top_k)
        return bool(plan)

    def _prepare(self, job: Job, mirror: StudyMirror, *, attempt: int = 1, retry_of: int | None = None,
                 fixed_params: dict[str, Any] | None = None, seed: int | None = None,
                 confirm_of: int | None = None) -> int:
        """Ask and commit a trial (queued, not yet sent); returns its row id."""
        attrs = {"regsearch_confirm_of": confirm_of, "regsearch_seed": seed} if confirm_of is not None else None
        number, optuna_trial_id, params = mirror.ask(fixed_params, user_attrs=attrs)
        failpoints.hit("coordinator.after_ask")
        trial_id = trial_store.add_trial(self.db, job_id=job.id, number=number, optuna_trial_id=optuna_trial_id,
                                         params=params, attempt=attempt, retry_of=retry_of, seed=seed,
                                         confirm_of=confirm_of)
        failpoints.hit("coordinator.after_commit")
        return trial_id

    def _send(self, rows: list[Trial]) -> None:
        self._send_ids([r.id for r in rows])

    def _send_ids(self, trial_ids: list[int]) -> None:
        # Marked first: a worker may refuse the message (its job at parallelism) and mark the
        # trial unsent before a mark made after sending would land. A send that fails after the
        # mark is a lost message, which the reconciler re-sends.
        trial_store.mark_sent(self.db, trial_ids=trial_ids)
        for trial_id in trial_ids:
            self.queue.send(trial_id, self._queue_name())

    def _finish(self, job: Job, rows: list[Trial]) -> None:
        final = [r for r in rows if r.state in FINAL_TRIAL_STATES and not r.retried]
        if final and all(r.state == "failed" for r in final):
            first = next((r.error for r in final if r.error), "unknown error")
            job_store.set_job_status(self.db, job_id=job.id, status="failed",
                                     error=f"all {len(final)} trials failed; first error: {first}")
        else:
            job_store.set_job_status(self.db, job_id=job.id, status="completed")
        self._forget(job.id)
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
    def _tell(mirror: StudyMirror, number: int, values: list[float] | None, state: str) -> None:
        """Record an outcome the coordinator decided (or recovered) in both studies."""
        study = mirror.record
        try:
            if state == "complete" and values is not None:
                study.tell(number, values, skip_if_finished=True)
            else:
                study.tell(number, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL,
                           skip_if_finished=True)
        except UpdateFinishedTrialError:
            pass  # the worker's own tell got there first, with the same outcome
        mirror.tell(number, values, state)
        mirror.told.add(number)


def run_coordinator(settings: Settings, stop: threading.Event | None = None) -> None:
    """The ``regsearch coordinator`` process: migrate, then tick until stopped."""
    from regsearch.messaging.queue import make_celery
    from regsearch.store.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    # No checkout ping: a tick that meets a connection broken by a database restart fails as an
    # outage, SQLAlchemy drops the pool, and the next tick reconnects.
    db = Database(settings.sqlalchemy_url, pre_ping=False)
    app = make_celery(settings)
    coordinator = Coordinator(db, TrialQueue(app), settings, events=EventListener(app))
    stop = stop or threading.Event()
    try:
        coordinator.run(stop)
    finally:
        db.dispose()
