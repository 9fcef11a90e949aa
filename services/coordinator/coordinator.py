"""The study coordinator: keeps each active job's trials in flight and its books straight.

One tick is one pass over the active jobs. For each job it runs the steps of
:data:`regsearch.services.coordinator.steps.TICK`, in this order, over the job's
:class:`~regsearch.services.coordinator.active.ActiveJob`:

    start -> learn -> sync -> cancel -> reap -> retry -> resend -> expire -> fill -> confirm -> finish

(each one is described in :mod:`regsearch.services.coordinator.steps`). ``sync``, ``reap`` and
``resend`` are maintenance and run at most every ``MAINTENANCE_EVERY_S``; the others run on
every tick, and a tick runs as soon as a worker reports a finished trial (events), so workers
do not idle for a poll interval between trials. Sampling happens on an in-memory mirror of the
study (:mod:`regsearch.services.coordinator.mirror`). Every step is safe to repeat after a
crash: the coordinator restarts from the database alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from regsearch.config import Settings
from regsearch.domain.families import FamilyCatalog
from regsearch.domain.states import JobState, TrialState
from regsearch.messaging.events import EventListener
from regsearch.messaging.queue import TrialQueue
from regsearch.services.coordinator.active import ActiveJob
from regsearch.services.coordinator.steps import run_tick
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database, StoreUnavailable
from regsearch.store.families import catalog as published_catalog
from regsearch.store.models import Job, utcnow
from regsearch.store.optuna_record import finish_running_trial
from regsearch.store.ownership import FencedOut, JobLeases, fenced
from regsearch.store.retry import is_transient

log = logging.getLogger("regsearch.coordinator")
MAINTENANCE_EVERY_S = 1.0
FAIL_JOB_AFTER = 5  # consecutive failing ticks of one job before the job is failed

Clock = Callable[[], dt.datetime]


class Coordinator:
    """Drives every active job one step per :meth:`tick`."""

    def __init__(self, db: Database, queue: TrialQueue, settings: Settings, clock: Clock = utcnow,
                 events: EventListener | None = None, catalog: FamilyCatalog | None = None,
                 leases: JobLeases | None = None) -> None:
        """``leases``: drive only the jobs this process holds a lease on (several coordinators,
        ``regsearch.store.ownership``); without, every active job (one coordinator, in tests)."""
        self.db = db
        self.leases = leases
        # every plugin family ever published: jobs accepted earlier still read back
        self.catalog = catalog if catalog is not None else published_catalog(db, live_s=None)
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self.events = events
        self._jobs: dict[str, ActiveJob] = {}  # warm per job: the sampler's state, the rows as last read
        self._errors: dict[str, int] = {}  # per job: consecutive ticks that raised

    # -- loop ---------------------------------------------------------------------------
    def tick(self, maintenance: bool = True) -> int:
        """One pass over the active jobs; returns how many there were."""
        active = job_store.active_jobs(self.db)
        held = self._held({job.id for job in active})
        for job in active:
            if held is not None and job.id not in held:
                continue  # another coordinator drives it
            try:
                with self._fence(job.id, held):
                    self.step(job, maintenance=maintenance)
                self._errors.pop(job.id, None)
            except FencedOut as exc:  # another coordinator took the job over: drop what we keep of it
                log.warning("%s; leaving the job to its new owner", exc)
                if self.leases is not None:
                    self.leases.lost(job.id)
                self._forget(job.id)
            except Exception as exc:  # noqa: BLE001 - one job's error must not stall the others
                if is_transient(exc):  # an outage (ours or Optuna's storage) is not the job's fault
                    log.warning("job %s: database unavailable, retrying next tick (%s)", job.id, exc)
                else:
                    try:
                        with self._fence(job.id, held):
                            self._job_error(job, exc)
                    except FencedOut:
                        self._forget(job.id)
        kept = {j.id for j in active} if held is None else set(held)
        for job_id in (set(self._jobs) | set(self._errors)) - kept:
            self._forget(job_id)
        return len(active)

    def _held(self, active_ids: set[str]) -> dict[str, int] | None:
        """The jobs this process drives now, with their fencing tokens (None: every job)."""
        if self.leases is None:
            return None
        before = dict(self.leases.held)
        if self.leases.due(active_ids, time.monotonic()):
            self.leases.refresh(active_ids, time.monotonic())
        for job_id, token in before.items():
            if self.leases.held.get(job_id) != token:
                self._forget(job_id)  # lost, or lost and taken back: rebuilt from the database
        return self.leases.held

    def _fence(self, job_id: str, held: dict[str, int] | None) -> contextlib.AbstractContextManager[None]:
        if held is None or self.leases is None:
            return contextlib.nullcontext()
        return fenced(job_id, self.leases.owner, held[job_id])

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
        """One tick of one job: the steps of ``TICK`` in order."""
        now = self.clock()
        active = self._jobs.get(job.id)
        if active is None:
            active = self._jobs[job.id] = ActiveJob(self.db, self.queue, self.settings, job, now=now,
                                                          catalog=self.catalog)
        active.begin(job, now=now, maintenance=maintenance)
        run_tick(active)
        if active.ended:
            self._forget(job.id)

    def _job_error(self, job: Job, exc: Exception) -> None:
        """Log a job's failed step; the same job failing ``FAIL_JOB_AFTER`` ticks in a row is
        failed with the error (a sampler that cannot load, say), the other jobs go on."""
        count = self._errors.get(job.id, 0) + 1
        self._errors[job.id] = count
        log.exception("job %s: coordinating failed (%d in a row)", job.id, count)
        if count >= FAIL_JOB_AFTER:
            reason = f"the coordinator could not run this job: {type(exc).__name__}: {exc}"
            job_store.request_cancel(self.db, job_id=job.id)  # running trials stop at their next epoch
            # Optuna's record directly, not the job's mirror: building the mirror may be what fails.
            for row in trial_store.job_trials(self.db, job_id=job.id):
                if row.state == TrialState.QUEUED and trial_store.fail_queued(self.db, trial_id=row.id, reason=reason):
                    finish_running_trial(self.db.engine, row.optuna_trial_id, TrialState.FAILED, None)
            job_store.set_job_status(self.db, job_id=job.id, status=JobState.FAILED, error=reason)
            self._forget(job.id)

    def _forget(self, job_id: str) -> None:
        """Drop what this process keeps for a job that is no longer active."""
        self._jobs.pop(job_id, None)
        self._errors.pop(job_id, None)


def run_coordinator(settings: Settings, stop: threading.Event | None = None) -> None:
    """The ``regsearch coordinator`` process: migrate, then tick until stopped."""
    from regsearch.messaging.queue import make_celery
    from regsearch.store.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    # No checkout ping: a tick that meets a connection broken by a database restart fails as an
    # outage, SQLAlchemy drops the pool, and the next tick reconnects.
    db = Database(settings.sqlalchemy_url, pre_ping=False)
    app = make_celery(settings)
    leases = JobLeases(db, settings.coordinator_lease_s)
    coordinator = Coordinator(db, TrialQueue(app), settings, events=EventListener(app), leases=leases)
    log.info("coordinator %s: lease %.1fs", leases.owner, settings.coordinator_lease_s)
    stop = stop or threading.Event()
    try:
        coordinator.run(stop)
    finally:
        leases.release_all()  # a clean stop: the others adopt at once, not after the lease
        db.dispose()
