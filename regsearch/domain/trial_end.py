"""How a trial ends: its final state, error and objective values, decided in one place.

Every place that ends a trial or reads an ended one asks :func:`trial_end`: the worker after
training (a lone trial, ``regsearch.worker.runner``, and each member of a pack,
``regsearch.worker.pack_runner``), the coordinator when it tells Optuna about a row
(``regsearch.services.coordinator.active``, ``mirror``), and the dashboard when it rebuilds
Optuna trials. The rule it holds once: a trial is complete only with a finite value for every
objective metric; otherwise it failed (Optuna keeps no COMPLETE trial without its values, and a
NaN accuracy is no evidence).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regsearch.domain.states import FINAL_TRIAL_STATES, EndReason, StopReason, TrialState

__all__ = ["Outcome", "objective_values", "trial_end"]


@dataclass(frozen=True)
class Outcome:
    """A trial's end: its final state, the error the service writes (None: none, or the row's
    own), and the objective's values (a complete trial's only, each finite)."""

    state: TrialState
    error: str | None = None
    values: list[float] | None = None


def objective_values(metrics: Mapping[str, Any] | None, objectives: Sequence[str]) -> list[float] | None:
    """The objective metrics' values in order, or None when one is missing or not a finite number."""
    values = [(metrics or {}).get(m) for m in objectives]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def trial_end(how: StopReason | TrialState | str | None, metrics: Mapping[str, Any] | None,
              objectives: Sequence[str]) -> Outcome:
    """The trial's end from how it stopped and what it measured.

    ``how``: None when training ran its epochs; the :class:`StopReason` that stopped it early;
    or, for a trial already ended (a row read back), its final :class:`TrialState` (a plain
    string from the database is read as one). A stop for draining is no end: the trial goes
    back to the queue, so it raises ``ValueError``, as a state that is not final does.
    """
    if isinstance(how, StopReason):
        if how == StopReason.PRUNED:
            return Outcome(TrialState.PRUNED)
        if how == StopReason.CANCELLED:
            return Outcome(TrialState.CANCELLED, EndReason.JOB_CANCELLED)
        if how == StopReason.LEASE_LOST:
            return Outcome(TrialState.FAILED, f"{StopReason.LEASE_LOST}: the trial was presumed dead and reassigned")
        raise ValueError(f"a trial stopped for {how!r} does not end: it goes back to the queue")
    state = TrialState.COMPLETE if how is None else TrialState(how)
    if state not in FINAL_TRIAL_STATES:
        raise ValueError(f"trial state {state!r} is not final")
    if state != TrialState.COMPLETE:
        return Outcome(state)
    values = objective_values(metrics, objectives)
    if values is None:
        return Outcome(TrialState.FAILED, f"objective {list(objectives)} is not a finite number")
    return Outcome(TrialState.COMPLETE, values=values)
