"""The states of a job and of a trial, and why a trial stopped: one definition each.

The values are the strings of the public interface (docs/interface.md: job states, trial states) and
of the database columns, so a state compares equal to the string read back from a row
(``TrialState.COMPLETE == "complete"``). Optuna has a ``TrialState`` of its own; modules that
need both import Optuna's as ``OptunaTrialState``, and :func:`optuna_state` is the only mapping
from ours to it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Optuna is imported only by the caller that needs the mapping
    from optuna.trial import TrialState as OptunaTrialState

__all__ = [
    "ACTIVE_JOB_STATES",
    "ACTIVE_TRIAL_STATES",
    "COUNTED_TRIAL_STATES",
    "FINAL_JOB_STATES",
    "FINAL_TRIAL_STATES",
    "EndReason",
    "JobState",
    "StopReason",
    "TrialState",
    "WeightsState",
    "optuna_state",
]


class _StrEnum(str, enum.Enum):
    """A str enum that prints as its value (``enum.StrEnum`` needs Python 3.11)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class JobState(_StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrialState(_StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    # Stopped, or never started, because its job was cancelled: not a failure.
    CANCELLED = "cancelled"


FINAL_JOB_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
FINAL_TRIAL_STATES: frozenset[TrialState] = frozenset(
    {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED, TrialState.CANCELLED})
# The states that are not final: a job or trial still to be (or being) worked on.
ACTIVE_JOB_STATES: frozenset[JobState] = frozenset({JobState.QUEUED, JobState.RUNNING})
ACTIVE_TRIAL_STATES: frozenset[TrialState] = frozenset({TrialState.QUEUED, TrialState.RUNNING})
# The keys of a job's trial counts, in order (docs/interface.md, GET /jobs/{id}: counts; the API's
# TrialCounts, the dashboard's and the report's counts). ``cancelled`` is not among them: the
# interface's counts list five states.
COUNTED_TRIAL_STATES: tuple[TrialState, ...] = (
    TrialState.QUEUED, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED,
    TrialState.CANCELLED)


class StopReason(_StrEnum):
    """Why a running trial's epoch loop stopped before its last epoch."""

    PRUNED = "pruned"
    CANCELLED = "cancelled"  # its job was cancelled
    DRAINING = "draining"  # its worker is shutting down: the trial goes back to the queue
    LEASE_LOST = "lease lost"  # presumed dead and reaped: another attempt owns the trial now


class EndReason(_StrEnum):
    """The message the service writes on a trial it ended itself (not the trial's own error)."""

    JOB_CANCELLED = "job cancelled"
    # A worker found the job cannot run at all: its data, or its ``auto`` network, cannot be used
    # (regsearch.store.job_data.fail_job_for_data); the job ends failed with the reason as its error.
    DATA_UNUSABLE = "not started: the job cannot run (its data or its network; see the job's error)"
    TIMEOUT_NOT_STARTED = "not started: the job's timeout passed"
    NOT_ENQUEUED = "coordinator stopped before the trial was enqueued"
    # On a job (its ``error``, though it completed): every new search configuration asked for
    # was one the job already had; written as "search space exhausted: N distinct configurations".
    SPACE_EXHAUSTED = "search space exhausted"


class WeightsState(_StrEnum):
    """What became of a complete trial's best-validation weights (``regsearch_trials.weights``;
    NULL for a trial that did not complete). The artifact store holds the file of a ``kept`` one."""

    KEPT = "kept"
    EVICTING = "evicting"  # outside the job's top budget.keep_weights: its file is being deleted
    EVICTED = "evicted"  # outside the top: its file was deleted, or never written (ranked out at once)
    NOT_SAVED = "not saved"  # budget.keep_weights is 0, or the artifact store refused the file


def optuna_state(state: TrialState | str) -> OptunaTrialState:
    """Optuna's state for a final trial of ours: complete, pruned, or FAIL for every other end.

    Optuna has no cancelled state: a cancelled trial is FAIL in its record, and the reason is on
    our row.
    """
    from optuna.trial import TrialState as OptunaTrialState

    return {
        TrialState.COMPLETE: OptunaTrialState.COMPLETE,
        TrialState.PRUNED: OptunaTrialState.PRUNED,
        TrialState.RUNNING: OptunaTrialState.RUNNING,
        TrialState.QUEUED: OptunaTrialState.WAITING,
    }.get(TrialState(state), OptunaTrialState.FAIL)
