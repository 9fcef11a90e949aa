"""The one ranking of a job's configurations: what "the best configuration" means, everywhere.

Every surface that shows a best configuration or a leaders ordering calls
:func:`rank_configurations` and nothing else: the API (``GET /jobs/{id}/best``, ``best`` on
``GET /jobs/{id}`` and on the ``GET /jobs`` items, through ``regsearch.store.jobs``), the CLI
(``regsearch best``, ``status``, ``submit --wait``: they print what the API answers), the
report's recommendation (``regsearch.evidence``) and the dashboard's leaders, jobs table and
Pareto chart (``dashboard/frames.py``). Pure: plain trial dicts in (the keys of the API's trial
items: ``number``, ``state``, ``metrics``, ``confirm_of``, ``seed``; anything else rides
along), no database.

The rule
--------
1. **Candidates** are the complete *search* trials (``confirm_of`` is None). A confirmation run
   is never a candidate of its own: it is evidence for the configuration it re-runs.
2. **Scores.** A candidate's *seed group* is itself plus its complete confirmation runs
   (:func:`regsearch.domain.confirm.seed_groups`). Its score on each objective is the mean over
   the group's finite values (:func:`regsearch.domain.stats.mean_interval`, the same number the
   report and ``/best``'s ``confirmation`` show); for an unconfirmed configuration that is its
   single value. A missing or non-finite value is the worst possible value.
3. **Tiers.** Confirmed configurations (at least one complete confirmation run) rank ahead of
   every unconfirmed one. Confirmation re-runs the search's top-k, so the unconfirmed ones
   already lost to them on a single run; a mean over seeds and one seed's value are not
   comparable, and letting a single lucky run overtake a mean would reward not being re-run.
   (This is what the API did before the ranking had one home.)
4. **Fronts.** Within a tier, non-dominated sorting on the scores (directions applied): front 0
   is the Pareto front (no other configuration of the tier is at least as good on every
   objective and better on one), front 1 the Pareto front of the rest, and so on. With one
   objective the fronts are simply the distinct scores, best first.
5. **Tie-break** within a front: the score on the first objective, then the second, ..., then
   the trial number (earlier first). Trial numbers are unique within a job, so the order is
   total and deterministic, whatever order the trials come in.

With several objectives the first configuration is therefore the one with the best score on the
first objective (it is always non-dominated), and the Pareto front leads the list.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from regsearch.domain.confirm import seed_groups
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState
from regsearch.domain.stats import mean_interval
from regsearch.domain.stored_spec import StoredSpec

TrialDict = Mapping[str, Any]
Objectives = Sequence[tuple[str, str]]  # (metric, "maximize" | "minimize"), the spec's order

__all__ = ["RankedConfig", "objectives_of", "pareto_fronts", "rank_by_seed_mean", "rank_configurations", "rank_jobs"]


@dataclass(frozen=True)
class RankedConfig:
    """One configuration in the ranking."""

    rank: int  # 1-based position in the ranking
    trial: TrialDict  # the search trial (its params, recipe and own metrics)
    runs: tuple[TrialDict, ...]  # its seed group: itself first, then its complete confirmation runs
    confirmed: bool  # at least one complete confirmation run: ranked in the first tier, by its means
    scores: tuple[float | None, ...]  # per objective, what was compared: the mean over ``runs``
    front: int  # 0 = on its tier's Pareto front

    @property
    def number(self) -> int:
        return int(self.trial["number"])

    @property
    def score(self) -> float | None:
        """The score on the first objective."""
        return self.scores[0] if self.scores else None


def _value(trial: TrialDict, metric: str) -> Any:
    metrics = trial.get("metrics")
    return metrics.get(metric) if isinstance(metrics, Mapping) else None


def _mean(values: list[Any]) -> float | None:
    """The mean of the finite values (regsearch.domain.stats, the number the report shows)."""
    if len(values) == 1:  # one run: its own value (what mean_interval gives, without its cost)
        value = values[0]
        finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if finite else None
    return mean_interval(values).mean


def _key(score: float | None, direction: str) -> float:
    """Smaller is better; a missing score is the worst."""
    if score is None:
        return math.inf
    return -score if direction == "maximize" else score


def pareto_fronts(points: np.ndarray | Sequence[Sequence[float]]) -> list[int]:
    """The front of each row of ``points`` (n x m, smaller is better in every column; NaN and
    +inf are the worst value): 0 for the non-dominated rows, 1 for those of the rest, ...

    Exact, and fast enough for every job size: one column is a sort; two columns are sorted
    once and placed by binary search (O(n log n)); three or more compare all pairs (O(n^2 m),
    in blocks).
    """
    values = np.asarray(points, dtype=float)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    n = len(values)
    if n == 0:
        return []
    values = np.where(np.isnan(values), np.inf, values)
    # Identical points share a front: rank the distinct ones, then hand the front back.
    distinct, inverse = np.unique(values, axis=0, return_inverse=True)  # sorted lexicographically
    inverse = np.asarray(inverse).reshape(-1)
    if distinct.shape[1] == 1:
        fronts = np.arange(len(distinct))
    elif distinct.shape[1] == 2:
        fronts = _fronts_2d(distinct)
    else:
        fronts = _fronts_nd(distinct)
    return [int(f) for f in fronts[inverse]]


def _fronts_2d(points: np.ndarray) -> np.ndarray:
    """Distinct points sorted by (x, y): a point earlier in that order dominates a later one iff
    its y is no larger. Front k keeps the smallest y of its members (non-decreasing in k), so a
    point joins the first front whose smallest y is larger than its own."""
    smallest: list[float] = []
    fronts = np.empty(len(points), dtype=np.int64)
    for i, y in enumerate(points[:, 1].tolist()):
        k = bisect.bisect_right(smallest, y)
        if k == len(smallest):
            smallest.append(y)
        else:
            smallest[k] = y
        fronts[i] = k
    return fronts


def _fronts_nd(points: np.ndarray, block: int = 256) -> np.ndarray:
    """Deb et al.'s fast non-dominated sort: count each point's dominators, then peel."""
    n = len(points)
    dominated_by = np.zeros((n, n), dtype=bool)  # [i, j]: j dominates i
    for start in range(0, n, block):
        rows = points[start : start + block]
        no_worse = np.ones((len(rows), n), dtype=bool)
        better = np.zeros((len(rows), n), dtype=bool)
        for j in range(points.shape[1]):  # column by column: 2-d comparisons, no 3-d temporaries
            no_worse &= points[None, :, j] <= rows[:, j, None]
            better |= points[None, :, j] < rows[:, j, None]
        dominated_by[start : start + block] = no_worse & better
    remaining = dominated_by.sum(axis=1)
    fronts = np.full(n, -1, dtype=np.int64)
    front = 0
    current = np.flatnonzero(remaining == 0)
    while current.size:
        fronts[current] = front
        remaining = remaining - dominated_by[:, current].sum(axis=1)
        current = np.flatnonzero((remaining == 0) & (fronts < 0))
        front += 1
    return fronts


def rank_configurations(trials: Iterable[TrialDict], objectives: Objectives, *,
                        k: int | None = None) -> list[RankedConfig]:
    """A job's configurations, best first (the rule is in the module's doc); the first ``k``.

    ``trials`` are any of the job's trials (every state, search and confirmation runs, in any
    order): only complete ones count.
    """
    trials = list(trials)
    objectives = list(objectives) or [("val_acc", "maximize")]
    directions = [direction for _, direction in objectives]
    groups = seed_groups(trials)
    candidates = [t for t in trials if t.get("confirm_of") is None and t.get("state") == TrialState.COMPLETE]
    entries = []
    for trial in candidates:
        group = groups.get(int(trial["number"]))
        runs = tuple(group) if group else (trial,)
        scores = tuple(_mean([_value(t, metric) for t in runs]) for metric, _ in objectives)
        keys = tuple(_key(s, d) for s, d in zip(scores, directions))
        entries.append((0 if group else 1, keys, int(trial["number"]), trial, runs, scores))
    fronts: dict[int, int] = {}
    for tier in (0, 1):
        members = [e for e in entries if e[0] == tier]
        for entry, front in zip(members, pareto_fronts([e[1] for e in members]) if members else []):
            fronts[entry[2]] = front
    entries.sort(key=lambda e: (e[0], fronts[e[2]], *e[1], e[2]))
    return [
        RankedConfig(rank=i + 1, trial=trial, runs=runs, confirmed=tier == 0, scores=scores, front=fronts[number])
        for i, (tier, _, number, trial, runs, scores) in enumerate(entries[:k] if k is not None else entries)
    ]


def rank_by_seed_mean(
    trials: Sequence[TrialDict], *, metric: str, direction: str
) -> list[tuple[TrialDict, list[TrialDict]]]:
    """:func:`rank_configurations` on one objective, as (search trial, its seed group) pairs:
    confirmed configurations by their seed-group mean first, then the unconfirmed ones by their
    single value (a group of one)."""
    return [(ranked.trial, list(ranked.runs)) for ranked in rank_configurations(trials, [(metric, direction)])]


def rank_jobs(trials: Iterable[TrialDict], objectives: Mapping[str, Objectives], *,
              k: int | None = None) -> dict[str, list[RankedConfig]]:
    """The ranking of several jobs at once: ``trials`` carry a ``job_id``; one entry per job of
    ``objectives`` (an empty list for a job without a complete trial)."""
    by_job: dict[str, list[TrialDict]] = {job_id: [] for job_id in objectives}
    for trial in trials:
        if trial.get("job_id") in by_job:
            by_job[trial["job_id"]].append(trial)
    return {job_id: rank_configurations(by_job[job_id], objectives[job_id], k=k) for job_id in objectives}


def objectives_of(spec: Any) -> list[tuple[str, str]]:
    """A job spec's objectives as (metric, direction) pairs: a ``JobSpec``, or a stored spec read
    leniently (``regsearch.domain.stored_spec``: one that no longer validates still ranks by what
    its ``objective`` says)."""
    if isinstance(spec, JobSpec):
        return list(zip(spec.objective.metrics, spec.directions))
    return list((spec if isinstance(spec, StoredSpec) else StoredSpec.read(spec)).objectives)
