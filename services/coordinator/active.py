"""One active job as the coordinator's steps see it: its row, spec, mirror and trial rows.

The steps (:mod:`regsearch.services.coordinator.steps`) decide; an :class:`ActiveJob` reads and
writes for them. It re-reads the trial rows in one place, :attr:`ActiveJob.rows`: at their first
use in a tick, and again only after one of its own writes changed them, reading just what can
have changed (:mod:`regsearch.services.coordinator.rows`). A write that ends a trial also tells
both studies (Optuna's record and the mirror); a crash in between is made up by ``sync``.

An ``ActiveJob`` lives as long as its job is active, so its mirror (the sampler's state) and
its rows stay warm between ticks; :meth:`ActiveJob.begin` starts each tick over.
"""

from __future__ import annotations

import datetime as dt
import logging
from enum import IntEnum
from typing import Any, NamedTuple

from optuna.trial import FrozenTrial

from regsearch import failpoints
from regsearch.config import Settings
from regsearch.domain.families import FamilyCatalog, validation_context
from regsearch.domain.packing import pack_declined
from regsearch.domain.space import structure_of
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import FINAL_JOB_STATES, EndReason, JobState, TrialState
from regsearch.domain.trial_end import Outcome, trial_end
from regsearch.messaging.queue import DEFAULT_QUEUE, TrialQueue
from regsearch.services.coordinator.balance import placement_order
from regsearch.services.coordinator.mirror import (
    CONFIRM_ATTR,
    SEED_ATTR,
    SpaceExhausted,
    StudyMirror,
)
from regsearch.services.coordinator.rows import JobRows
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.models import Job, Trial, as_utc

log = logging.getLogger("regsearch.coordinator")


class Exhausted(NamedTuple):
    """A search ask found no new configuration (``fill``): the search trials that had ended then,
    and the distinct configurations the job has. Kept between ticks; ``fill`` asks again once a
    search trial ends (a failed one's configuration is free again)."""

    ended: int
    distinct: int


class Read(IntEnum):
    """What the next use of the rows reads first; a later need only raises it."""

    NOTHING = 0  # they are current
    CHANGED = 1  # what can have changed (rows.JobRows.refresh): workers or our own writes
    ALL = 2  # every row: the job's end is decided on them


class ActiveJob:
    """A job the coordinator is driving (not the :class:`~regsearch.domain.states.JobState` enum)."""

    def __init__(self, db: Database, queue: TrialQueue, settings: Settings, row: Job, *,
                 now: dt.datetime, catalog: FamilyCatalog | None = None) -> None:
        self.settings = settings
        self._db = db
        self._queue = queue
        self.mirror = StudyMirror(db, row.study_name,
                                  JobSpec.model_validate(row.spec, context=validation_context(catalog)))
        self.spec: JobSpec = self.mirror.spec  # validated once per job, when its mirror was built
        self._cache = JobRows(db, row.id)
        self._rows: list[Trial] = []
        self._next_read = Read.ALL
        self.ended = False  # the job is no longer active
        self._said_declined = False  # the log said the workers decline its packs (prepare_pack)
        self.exhausted: Exhausted | None = None
        self.begin(row, now=now, maintenance=True)

    @property
    def id(self) -> str:
        return self.row.id

    def begin(self, row: Job, *, now: dt.datetime, maintenance: bool) -> None:
        """Start a tick with the job's row as just read: what one tick knows starts over."""
        self.row = row
        self.now = now
        self.maintenance = maintenance or row.cancel_requested  # a cancel is acted on at once
        self.halted = False  # no further step runs in this tick
        self._must_read(Read.CHANGED)  # workers changed them since the last tick

    def halt(self) -> None:
        """No further step runs for this job in this tick."""
        self.halted = True

    # -- reads ----------------------------------------------------------------------------
    @property
    def rows(self) -> list[Trial]:
        """The job's rows by trial number; the only place that reads them."""
        if self._next_read != Read.NOTHING:
            self._rows = self._cache.refresh(full=self._next_read == Read.ALL)
            self._next_read = Read.NOTHING
        return self._rows

    def reload(self) -> None:
        """Read every row again before their next use (the job's end is decided on them)."""
        self._must_read(Read.ALL)

    def _must_read(self, read: Read) -> None:
        self._next_read = max(self._next_read, read)

    def count(self, state: TrialState) -> int:
        return sum(1 for row in self.rows if row.state == state)

    @property
    def asked(self) -> int:
        """Search trials asked so far: a retry or a confirmation run is not a new ask."""
        return sum(1 for row in self.rows if row.retry_of is None and row.confirm_of is None)

    @property
    def search_over(self) -> bool:
        """The search asked its budget, found no new configuration, or ran out of time."""
        return self.timed_out or self.exhausted is not None or self.asked >= self.spec.budget.n_trials

    @property
    def timed_out(self) -> bool:
        started = as_utc(self.row.started_at)
        if self.spec.budget.timeout_s is None or started is None:
            return False
        return (self.now - started).total_seconds() > self.spec.budget.timeout_s

    def outcome(self, row: Trial, state: TrialState | None = None) -> Outcome:
        """A final row's end as Optuna keeps it (``regsearch.domain.trial_end``); ``state``: the
        one the coordinator gives a row it ends itself (no metrics)."""
        if state is not None:
            return trial_end(state, None, self.spec.objective.metrics)
        return trial_end(row.state, row.metrics, self.spec.objective.metrics)

    # -- writes (a write that changes a row leaves the rows to be re-read) ---------------
    def set_status(self, status: JobState, error: str | None = None) -> None:
        job_store.set_job_status(self._db, job_id=self.id, status=status, error=error)
        self.row.status = status
        if status == JobState.RUNNING:
            self.row.started_at = self.now  # the timeout counts from here, on this clock
        if status in FINAL_JOB_STATES:
            self.ended = True
            self.halt()

    def tell(self, row: Trial) -> None:
        """Tell both studies the outcome of a final row."""
        self.mirror.tell(row.number, row.optuna_trial_id, self.outcome(row))

    def end_queued(self, row: Trial, reason: str, *, state: TrialState = TrialState.FAILED,
                   retryable: bool = False) -> bool:
        """End a trial that has not started (a worker holding its message finds it ended)."""
        if not trial_store.fail_queued(self._db, trial_id=row.id, reason=reason, retryable=retryable,
                                       state=state):
            return False
        self.mirror.tell(row.number, row.optuna_trial_id, self.outcome(row, state))
        self._must_read(Read.CHANGED)
        return True

    def end_stale(self, row: Trial, *, older_than: dt.datetime, reason: str, retryable: bool) -> bool:
        """Fail a running trial whose heartbeat is still older than ``older_than``."""
        if not trial_store.fail_stale(self._db, trial_id=row.id, older_than=older_than, reason=reason,
                                      retryable=retryable):
            return False
        self.mirror.tell(row.number, row.optuna_trial_id, self.outcome(row, TrialState.FAILED))
        self._must_read(Read.CHANGED)
        return True

    def adopt(self, frozen: FrozenTrial) -> None:
        """Give an Optuna trial without a row (asked, then the coordinator stopped before the row
        was committed) a failed, retryable row, so that its configuration runs again."""
        failed = trial_end(TrialState.FAILED, None, self.spec.objective.metrics)
        self.mirror.tell(frozen.number, frozen._trial_id, failed)
        row_id = trial_store.add_trial(self._db, job_id=self.id, number=frozen.number,
                                       optuna_trial_id=frozen._trial_id, params=dict(frozen.params))
        trial_store.fail_queued(self._db, trial_id=row_id, retryable=True, reason=EndReason.NOT_ENQUEUED)
        self._must_read(Read.CHANGED)

    def mark_retried(self, row: Trial) -> bool:
        if not trial_store.mark_retried(self._db, trial_id=row.id):
            return False
        self._cache.reread(row.id)  # a final row changed: re-read it with the open ones
        self._must_read(Read.CHANGED)
        return True

    def prepare(self, *, attempt: int = 1, retry_of: int | None = None,
                fixed_params: dict[str, Any] | None = None, seed: int | None = None,
                confirm_of: int | None = None) -> int:
        """Ask and commit a trial (queued, not yet sent); returns its row id."""
        attrs = None if confirm_of is None else {CONFIRM_ATTR: confirm_of, SEED_ATTR: seed}
        if fixed_params is None and confirm_of is None:
            number, optuna_trial_id, params = self._ask_search()
        else:
            number, optuna_trial_id, params = self.mirror.ask(fixed_params, user_attrs=attrs)
        return self._commit(number, optuna_trial_id, params, attempt=attempt, retry_of=retry_of, seed=seed,
                            confirm_of=confirm_of)

    def prepare_pack(self, size: int) -> list[int]:
        """Ask and commit up to ``size`` search trials of one structure: the first one's placement
        and layer selections, the sampler choosing the rest (dropout, momentum), so a worker
        can train them as one packed model (``budget.pack``). Fewer when that structure has no
        more new configurations; :class:`SpaceExhausted` only when the first has none. One, when
        the job's workers decline its packs (:meth:`_packs_declined`): grouping its asks by
        structure would then only narrow the search."""
        if self._packs_declined():
            return [self.prepare()]
        number, optuna_trial_id, params = self._ask_search()
        trial_ids = [self._commit(number, optuna_trial_id, params)]
        structure = structure_of(params)
        while len(trial_ids) < size:
            try:
                number, optuna_trial_id, companion = self.mirror.ask(structure=structure)
            except SpaceExhausted:
                break  # this structure is used up: a smaller pack
            trial_ids.append(self._commit(number, optuna_trial_id, companion))
        return trial_ids

    def _packs_declined(self) -> bool:
        """Whether the workers decline this job's packs (``regsearch.domain.packing``: on a CPU, a
        job that prunes), judged by the device of its latest claimed search trial (none claimed
        yet: no). Said once in the coordinator's log, the job's record of such decisions."""
        device = next((r.device for r in reversed(self.rows) if r.device and r.confirm_of is None), None)
        why = None if device is None else pack_declined(pruner=self.spec.pruner, device=device)
        if why is not None and not self._said_declined:
            log.info("job %s: budget.pack %d: search trials are asked one at a time: %s", self.id,
                     self.spec.budget.pack, why)
            self._said_declined = True
        return why is not None

    def _ask_search(self) -> tuple[int, int, dict[str, Any]]:
        """A new search trial; with ``space.placement_balance`` in the least-sampled placement that
        still has a new configuration (services/coordinator/balance.py)."""
        order = placement_order(self.spec, (row.params or {} for row in self.rows
                                            if row.retry_of is None and row.confirm_of is None))
        if order is None:
            return self.mirror.ask()
        for placement in order[:-1]:
            try:
                return self.mirror.ask(structure={"placement": placement})
            except SpaceExhausted:
                continue  # this placement is used up: the next least-sampled one
        return self.mirror.ask(structure={"placement": order[-1]})

    def _commit(self, number: int, optuna_trial_id: int, params: dict[str, Any], **row: Any) -> int:
        failpoints.hit("coordinator.after_ask")
        trial_id = trial_store.add_trial(self._db, job_id=self.id, number=number,
                                         optuna_trial_id=optuna_trial_id, params=params, **row)
        failpoints.hit("coordinator.after_commit")
        self._must_read(Read.CHANGED)
        return trial_id

    def send(self, trial_ids: list[int]) -> None:
        if not trial_ids:
            return
        # Marked first: a worker may refuse the message (its job at parallelism) and mark the
        # trial unsent before a mark made after sending would land. A send that fails after the
        # mark is a lost message, which ``resend`` sends again.
        trial_store.mark_sent(self._db, trial_ids=trial_ids)
        for trial_id in trial_ids:
            self._queue.send(trial_id, DEFAULT_QUEUE)
        # The rows are not re-read for the stamps: a row sent stays sent for every later step
        # of the tick, and open rows are re-read at the next tick anyway.
