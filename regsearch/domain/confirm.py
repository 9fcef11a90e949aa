"""Confirmation runs: which re-runs a finished search needs, and how their seeds group.

A search trial's configuration re-runs with ``confirm.seeds`` extra training seeds; together with
the search trial itself these runs are the configuration's *seed group*. The one ranking of
configurations (regsearch.domain.ranking, which imports this module: never the other way round)
ranks confirmed configurations by the mean of the objective over their group
(regsearch.domain.stats).
Everything here works on plain trial dicts with the keys of the API's trial items (``number``,
``state``, ``params``, ``metrics``, ``confirm_of``, ``seed``), so the API, the coordinator, the
report and the dashboard share one definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regsearch.domain.states import TrialState
from regsearch.domain.stats import Interval, mean_interval

TrialDict = Mapping[str, Any]


@dataclass(frozen=True)
class PlannedRun:
    """One confirmation run to create: re-run search trial ``confirm_of`` with ``seed``."""

    confirm_of: int
    seed: int
    params: dict[str, Any]


def is_search(trial: TrialDict) -> bool:
    return trial.get("confirm_of") is None


def _objective(trial: TrialDict, metric: str) -> float | None:
    value = (trial.get("metrics") or {}).get(metric)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def top_search_trials(trials: Sequence[TrialDict], *, metric: str, direction: str, k: int) -> list[TrialDict]:
    """The ``k`` best complete search trials by ``metric`` (ties: the earlier trial first)."""
    scored = [t for t in trials if is_search(t) and t.get("state") == TrialState.COMPLETE and _objective(t, metric) is not None]
    sign = -1.0 if direction == "maximize" else 1.0
    scored.sort(key=lambda t: (sign * _objective(t, metric), t["number"]))  # type: ignore[operator]
    return scored[:k]


def confirmation_plan(
    trials: Sequence[TrialDict], *, metric: str, direction: str, top_k: int, seeds: int, base_seed: int
) -> list[PlannedRun]:
    """The confirmation runs still to create, given every trial of the job so far.

    Idempotent: a run whose (configuration, seed) already has a row (any state, any attempt) is
    not planned again, so a coordinator that restarts mid-way creates only what is missing.
    """
    existing = {(t["confirm_of"], t.get("seed")) for t in trials if not is_search(t)}
    planned = []
    for leader in top_search_trials(trials, metric=metric, direction=direction, k=top_k):
        for offset in range(1, seeds + 1):
            seed = base_seed + offset
            if (leader["number"], seed) not in existing:
                planned.append(PlannedRun(confirm_of=leader["number"], seed=seed, params=dict(leader["params"])))
    return planned


def seed_groups(trials: Sequence[TrialDict]) -> dict[int, list[TrialDict]]:
    """Search trial number -> its complete runs (itself first, then its confirmation runs).

    Only configurations that have at least one confirmation run appear; retried-away attempts
    are not complete, so each (configuration, seed) counts once.
    """
    groups: dict[int, list[TrialDict]] = {}
    by_number = {t["number"]: t for t in trials if is_search(t)}
    for trial in sorted(trials, key=lambda t: t["number"]):  # each group in trial-number order
        if is_search(trial) or trial.get("state") != TrialState.COMPLETE:
            continue
        leader = by_number.get(trial["confirm_of"])
        if leader is None:
            continue
        group = groups.setdefault(leader["number"], [leader] if leader.get("state") == TrialState.COMPLETE else [])
        group.append(trial)
    return groups


def runs_epochs(runs: Sequence[TrialDict]) -> int | None:
    """The most epochs any of ``runs`` trained (their ``epochs_run``): the top of the range of
    ``epochs_to_95pct_best``. A complete trial runs all of the job's epochs, so this is the job's."""
    known = [value for value in (_objective(t, "epochs_run") for t in runs) if value is not None]
    return int(max(known)) if known else None


def group_interval(group: Sequence[TrialDict], metric: str, task: str = "classification") -> Interval:
    """Mean, std and 95% interval of ``metric`` over a set of runs (a seed group, a report group),
    cut at the metric's range on the job's ``task`` (regsearch.domain.stats.mean_interval)."""
    return mean_interval((_objective(t, metric) for t in group), metric, epochs=runs_epochs(group), task=task)
