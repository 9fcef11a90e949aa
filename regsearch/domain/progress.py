"""A job's trials per state and its progress: one definition for the API, the CLI and the dashboard.

Counts leave out attempts that a retry replaced (they do not count toward the budget) and hold
every counted state, 0 where none. Progress is the trials in a final state over the planned
ones: the search's ``n_trials`` plus the confirmation runs (``regsearch.domain.stored_spec``), so
every screen shows the same denominator and never "39 of 30".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from regsearch.domain.metrics import format_metric
from regsearch.domain.states import COUNTED_TRIAL_STATES, FINAL_TRIAL_STATES, TrialState
from regsearch.domain.stored_spec import StoredSpec


def state_counts(found: Iterable[tuple[str, int]] = ()) -> dict[str, int]:
    """Trials per counted state from ``(state, n)`` pairs (the store's GROUP BY, a value count)."""
    counts = {state.value: 0 for state in COUNTED_TRIAL_STATES}
    for state, n in found:
        key = str(getattr(state, "value", state))
        if key in counts:
            counts[key] += int(n)
    return counts


class Progress(NamedTuple):
    """Unpacks as ``done, total``."""

    finished: int  # trials in a final state (complete, pruned, failed, cancelled)
    planned: int  # search trials + planned confirmation runs

    @property
    def fraction(self) -> float:
        """Finished over planned, at most 1 (0 while nothing is planned)."""
        return min(1.0, self.finished / self.planned) if self.planned else 0.0


def progress(counts: Mapping[str, int], planned: int) -> Progress:
    """A job's progress from its trials per state and its planned trials (``StoredSpec.n_planned``)."""
    return Progress(sum(int(counts.get(state, 0)) for state in FINAL_TRIAL_STATES), int(planned))


def document_progress(job: Mapping[str, Any]) -> Progress:
    """The progress of a job as the API answers it (``counts``, ``n_trials``, ``n_confirm``; an older
    answer without ``n_trials`` has it in its ``spec``)."""
    n_trials = job.get("n_trials")
    if not isinstance(n_trials, int):
        n_trials = StoredSpec.read(job["spec"]).n_trials if isinstance(job.get("spec"), Mapping) else 0
    return progress(job.get("counts") or {}, (n_trials or 0) + int(job.get("n_confirm") or 0))


def progress_detail(job: Mapping[str, Any]) -> str:
    """A job document's progress line beside its bar (``Client.wait``, ``regsearch demo``):
    ``running 2, pruned 1, failed 0, best val_rmse 55.120``, the best by the job's first
    objective in that metric's format."""
    counts = job.get("counts") or {}
    detail = ", ".join(f"{state.value} {counts.get(state, 0)}"
                       for state in (TrialState.RUNNING, TrialState.PRUNED, TrialState.FAILED))
    metric = StoredSpec.read(job.get("spec")).objectives[0][0]
    best = ((job.get("best") or {}).get("metrics") or {}).get(metric)
    if isinstance(best, (int, float)) and not isinstance(best, bool):
        detail += f", best {metric} {format_metric(metric, float(best))}"
    return detail
