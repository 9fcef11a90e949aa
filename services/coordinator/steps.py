"""The steps of one tick of one job, in the order :data:`TICK` runs them.

1. start     a queued job starts running (its timeout counts from here).
2. learn     the in-memory study learns the outcomes of rows that ended since it last looked.
3. sync      (maintenance) Optuna trials still RUNNING whose row is final are told; Optuna
             trials with no row (the coordinator died between ask and commit) get a failed,
             retryable row.
4. cancel    a cancelled job's queued trials end ("job cancelled") and its stale running ones
             are reaped without retry; once nothing runs the job is cancelled. The tick of a
             cancelled job ends here.
5. reap      (maintenance) running trials whose heartbeat is older than ``heartbeat_grace_s``
             fail, retryable.
6. retry     retryable failures under ``budget.max_retries`` are prepared again as a new attempt
             with the same parameters. Every tick: a failure owed a retry is prepared before
             ``finish`` may end the job.
7. resend    (maintenance) queued trials sent long ago and still unclaimed are sent again, with
             backoff (the claim makes duplicates harmless).
8. expire    the job's timeout passed: trials not started fail as "not started".
9. fill      unsent trials go out (retries first), then new ones are asked, until
             ``budget.parallelism`` + ``prepare_ahead`` are in flight or the budget is used.
             A new search trial is never a configuration the job has in flight, complete or
             pruned (:meth:`StudyMirror.ask`); when no new one is found the space is exhausted
             (:class:`Exhausted`): the search is over, and fill asks again only once a search
             trial has ended. It hands on the number of trials in flight.
10. confirm  the search over (:attr:`ActiveJob.search_over`) and nothing in flight: with
             ``confirm`` in the spec, the top-k configurations are prepared again with extra
             training seeds (``confirm_of`` set), each once
             (:func:`regsearch.domain.confirm.confirmation_plan`). It hands on how many.
11. finish   the search over, nothing in flight and no confirmation run prepared (or the timeout
             passed): Optuna's record is synced, and the job completes (or fails, when every
             trial failed). A job whose space was exhausted completes with the reason in its
             ``error`` ("search space exhausted: N distinct configurations").

The steps before ``fill`` act on the job alone; ``fill``, ``confirm`` and ``finish`` pass on what
the next one needs as values (:func:`run_tick`), and the job's end is decided on its rows read
afresh, once. A maintenance step runs at most every ``MAINTENANCE_EVERY_S`` (on every tick while
the job is being cancelled). Each step is safe to repeat after a crash: every write is a conditional UPDATE
or is found again by ``sync``, and the coordinator restarts from the database alone.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from regsearch.domain.confirm import confirmation_plan
from regsearch.domain.states import FINAL_TRIAL_STATES, EndReason, JobState, TrialState
from regsearch.services.coordinator.active import ActiveJob, Exhausted
from regsearch.services.coordinator.mirror import SpaceExhausted
from regsearch.store.jobs import trial_dict
from regsearch.store.models import Trial, as_utc

log = logging.getLogger("regsearch.coordinator")


def start(job: ActiveJob) -> None:
    if job.row.status == JobState.QUEUED:
        job.set_status(JobState.RUNNING)


def learn(job: ActiveJob) -> None:
    """Workers tell Optuna's record themselves; the mirror learns their outcomes from the rows."""
    for row in job.rows:
        if row.state in FINAL_TRIAL_STATES and not job.mirror.knows(row.number):
            job.mirror.learn(row.number, job.outcome(row))


def sync(job: ActiveJob) -> None:
    """Make Optuna's record and the rows agree."""
    by_number = {row.number: row for row in job.rows}
    for frozen in job.mirror.running_in_record():
        row = by_number.get(frozen.number)
        if row is None:
            job.adopt(frozen)
        elif row.state in FINAL_TRIAL_STATES:
            # Workers write the row and the record in one transaction, so this is a row the
            # coordinator itself ended, or one written before they did.
            job.tell(row)


def cancel(job: ActiveJob) -> None:
    """A cancelled job stops; so does one a worker stopped because its data or its network cannot
    be used (``regsearch.store.job_data``: the error is set with the flag), which ends ``failed``
    and fails its queued trials with ``EndReason.DATA_UNUSABLE``."""
    if not job.row.cancel_requested:
        return
    data_error = job.row.error
    reason = EndReason.DATA_UNUSABLE if data_error else EndReason.JOB_CANCELLED
    rows = job.rows
    for row in rows:
        if row.state == TrialState.QUEUED:
            # a cancelled job's queued trials end cancelled: not a failure
            job.end_queued(row, reason, state=TrialState.FAILED if data_error else TrialState.CANCELLED)
    _reap_stale(job, rows, retryable=False)
    if not any(row.state in (TrialState.QUEUED, TrialState.RUNNING) for row in job.rows):
        sync(job)  # Optuna's record agrees before the job ends
        job.set_status(JobState.FAILED if data_error else JobState.CANCELLED, error=data_error)
        log.info("job %s %s", job.id, f"failed: {data_error}" if data_error else "cancelled")
    job.halt()


def reap(job: ActiveJob) -> None:
    _reap_stale(job, job.rows, retryable=True)


def _reap_stale(job: ActiveJob, rows: list[Trial], *, retryable: bool) -> None:
    """``rows`` only nominates candidates; the conditional UPDATE re-checks the heartbeat."""
    grace = job.settings.heartbeat_grace_s
    cutoff = job.now - dt.timedelta(seconds=grace)
    for row in rows:
        beat = as_utc(row.heartbeat_at)
        if row.state != TrialState.RUNNING or beat is None or beat >= cutoff:
            continue
        reason = f"worker lost: no heartbeat from {row.worker or 'the worker'} for more than {grace:g}s"
        if job.end_stale(row, older_than=cutoff, reason=reason, retryable=retryable):
            log.warning("job %s trial %d: %s", job.id, row.number, reason)


def retry(job: ActiveJob) -> None:
    for row in job.rows:
        if row.state != TrialState.FAILED or row.retried or not row.retryable:
            continue
        if row.attempt > job.spec.budget.max_retries or not job.mark_retried(row):
            continue
        job.prepare(attempt=row.attempt + 1, retry_of=row.number, fixed_params=dict(row.params),
                    seed=row.seed, confirm_of=row.confirm_of)
        log.info("job %s trial %d: retrying as attempt %d", job.id, row.number, row.attempt + 1)


def resend(job: ActiveJob) -> None:
    """Lost messages. While the job runs ``parallelism`` trials, its queued messages are waiting
    their turn in the broker (sent ahead), not lost: nothing is sent again then."""
    if job.count(TrialState.RUNNING) >= job.spec.budget.parallelism:
        return
    due = []
    for row in job.rows:
        sent = as_utc(row.enqueued_at)
        if row.state != TrialState.QUEUED or sent is None:
            continue
        backoff = job.settings.resend_after_s * 2 ** min(max(row.send_count - 1, 0), 5)
        if (job.now - sent).total_seconds() > backoff:
            due.append(row.id)
    job.send(due)


def expire(job: ActiveJob) -> None:
    """A worker holding the message of an expired trial finds it failed and does not train."""
    if not job.timed_out:
        return
    for row in job.rows:
        if row.state == TrialState.QUEUED:
            job.end_queued(row, EndReason.TIMEOUT_NOT_STARTED)


def fill(job: ActiveJob) -> int:
    """Keep ``parallelism`` trials running and ``prepare_ahead`` more waiting in the broker;
    returns the trials in flight (running, sent, or prepared and kept for a free slot).

    A trial is asked, committed, marked sent, then sent. The ones beyond ``parallelism`` wait
    in the broker, so a worker that finishes a trial takes the next at once instead of waiting
    for this coordinator to react; the claim enforces ``parallelism`` per job and marks a
    refused trial unsent (``enqueued_at`` NULL), which is sent again here once a slot frees.
    The sampler sees the waiting trials as pending (constant liar).
    """
    rows, budget = job.rows, job.spec.budget
    running = sum(1 for r in rows if r.state == TrialState.RUNNING)
    if job.timed_out:  # expire ended what had not started; nothing more is asked
        return running
    in_flight = running + sum(1 for r in rows if r.state == TrialState.QUEUED and r.enqueued_at is not None)
    # Retries first: they are owed a run.
    unsent = sorted((r for r in rows if r.state == TrialState.QUEUED and r.enqueued_at is None),
                    key=lambda r: (r.retry_of is None, r.number))
    if running >= budget.parallelism:
        # A trial sent before and refused was refused by an idle worker: sending it again
        # before a running trial ends would only be refused again. It keeps its place.
        in_flight += sum(1 for r in unsent if r.send_count > 0)
        unsent = [r for r in unsent if r.send_count == 0]
    capacity = budget.parallelism + job.settings.prepare_ahead
    to_send = [r.id for r in unsent[: max(0, capacity - in_flight)]]
    job.send(to_send)
    in_flight += len(to_send)
    asked = job.asked
    ended = sum(1 for r in rows if r.confirm_of is None and r.state in FINAL_TRIAL_STATES)
    if job.exhausted is not None and job.exhausted.ended != ended:
        job.exhausted = None  # a search trial ended since: a failed one's configuration is free again
    while asked < budget.n_trials and in_flight < capacity and job.exhausted is None:
        # With budget.pack, trials go out in groups of one structure, committed and marked sent
        # together, so the worker that takes the first finds its companions queued.
        size = min(budget.pack, budget.n_trials - asked, capacity - in_flight)
        try:
            trial_ids = job.prepare_pack(size) if size > 1 else [job.prepare()]
        except SpaceExhausted as exc:
            job.exhausted = Exhausted(ended=ended, distinct=exc.distinct)
            log.info("job %s: %s; no more search trials", job.id, exc)
            break
        job.send(trial_ids)
        asked += len(trial_ids)
        in_flight += len(trial_ids)
    return in_flight


def confirm(job: ActiveJob) -> int:
    """Prepare the confirmation runs still missing (the search is over, nothing in flight, the
    rows just read afresh); returns how many. They go out on the next tick, like any unsent trial."""
    spec = job.spec
    if spec.confirm is None or job.timed_out:
        return 0
    plan = confirmation_plan(
        [trial_dict(r) for r in job.rows], metric=spec.objective.metrics[0], direction=spec.directions[0],
        top_k=spec.confirm.top_k, seeds=spec.confirm.seeds, base_seed=spec.training.seed,
    )
    for run in plan:
        job.prepare(fixed_params=run.params, seed=run.seed, confirm_of=run.confirm_of)
    if plan:
        log.info("job %s: search done, %d confirmation runs of the top %d configurations",
                 job.id, len(plan), spec.confirm.top_k)
    return len(plan)


def finish(job: ActiveJob) -> None:
    """End the job (the search is over, nothing in flight, no confirmation run prepared)."""
    sync(job)  # Optuna's record agrees before the job ends
    final = [r for r in job.rows if r.state in FINAL_TRIAL_STATES and not r.retried]
    if final and all(r.state == TrialState.FAILED for r in final):
        first = next((r.error for r in final if r.error), "unknown error")
        job.set_status(JobState.FAILED, error=f"all {len(final)} trials failed; first error: {first}")
    elif job.exhausted is not None:  # ended early: the reason goes where a job's end is explained
        job.set_status(JobState.COMPLETED,
                       error=f"{EndReason.SPACE_EXHAUSTED}: {job.exhausted.distinct} distinct configurations")
    else:
        job.set_status(JobState.COMPLETED)
    log.info("job %s finished", job.id)


@dataclass(frozen=True)
class Step:
    run: Callable[..., object]  # the job's steps take the job; see run_tick for what they hand on
    maintenance: bool = False  # runs at most every MAINTENANCE_EVERY_S

    @property
    def name(self) -> str:
        return self.run.__name__


# The steps that act on the job alone, in order.
HOUSEKEEPING: tuple[Step, ...] = (
    Step(start),
    Step(learn),
    Step(sync, maintenance=True),
    Step(cancel),
    Step(reap, maintenance=True),
    Step(retry),
    Step(resend, maintenance=True),
    Step(expire),
)
TICK: tuple[Step, ...] = (*HOUSEKEEPING, Step(fill), Step(confirm), Step(finish))


def run_tick(job: ActiveJob) -> None:
    """The steps of :data:`TICK` in order, until one halts the job's tick.

    ``fill`` hands on the trials in flight; with none and the search over, the rows are read
    afresh once, ``confirm`` hands on the runs it prepared, and with none ``finish`` ends the job.
    """
    for step in HOUSEKEEPING:
        if job.halted:
            return
        if step.maintenance and not job.maintenance:
            continue
        step.run(job)
    if job.halted:
        return
    in_flight = fill(job)
    if in_flight or not job.search_over:
        return
    job.reload()  # the job's end is decided on every row
    if confirm(job) == 0:
        finish(job)
