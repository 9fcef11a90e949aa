"""Pruning decisions from indexed SQL instead of Optuna's "load every trial".

Optuna's ``MedianPruner`` and ``HyperbandPruner`` call ``study.get_trials()`` on every check,
so a check costs more the larger the study (8-18 ms per epoch at 1,000-5,000 trials). These
pruners make the same decisions from two small tables:

- ``regsearch_step_values`` (job, step, trial): a complete trial's reported values, written with
  its result; the median at a step is one index range.
- ``regsearch_rung_values`` (job, bracket, rung, trial): the value a trial had when it reached a
  successive-halving rung (Optuna's ``completed_rung_i`` system attribute).

Semantics are Optuna 5's, line for line (``optuna/pruners/_percentile.py``,
``_successive_halving.py``, ``_hyperband.py``); ``tests/regsearch/test_pruning.py`` replays the
same reports through both and compares every decision.
"""

from __future__ import annotations

import binascii
import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from sqlalchemy import func, select

from regsearch.domain.spec import JobSpec
from regsearch.store.db import Database
from regsearch.store.models import RungValue, StepValue
from regsearch.store.trials import dialect_insert

MEDIAN_STARTUP_TRIALS = 5  # complete trials before the median pruner judges anyone
HYPERBAND_REDUCTION_FACTOR = 3  # successive halving keeps the top third at each rung


class Pruner(Protocol):
    def should_prune(self, number: int, history: Mapping[int, float]) -> bool:
        """``history`` is the trial's reported value per step, the current step last."""
        ...


class NoPruning:
    def should_prune(self, number: int, history: Mapping[int, float]) -> bool:
        return False


def _is_first_in_interval_step(step: int, steps: list[int], n_warmup_steps: int, interval_steps: int) -> bool:
    nearest_lower_pruning_step = (step - n_warmup_steps) // interval_steps * interval_steps + n_warmup_steps
    second_last_step = max((s for s in steps if s != step), default=-1)
    return second_last_step < nearest_lower_pruning_step


@dataclass
class _StepValues:
    """This process's copy of a job's complete trials' values per step, kept sorted."""

    seen_seq: int = 0  # completions read so far (== complete trials, as they are numbered 1..n)
    finite: dict[int, list[float]] = field(default_factory=dict)  # step -> sorted finite values
    counts: dict[int, int] = field(default_factory=dict)  # step -> values, NaN included


@dataclass
class SqlMedianPruner:
    """Optuna's ``MedianPruner`` (``PercentilePruner(50)``) over ``regsearch_step_values``.

    A check costs one indexed query that returns only the completions since the last check
    (usually none), then a lookup in a sorted list: independent of the study's size.
    """

    db: Database
    job_id: str
    maximize: bool
    n_startup_trials: int = MEDIAN_STARTUP_TRIALS
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1
    percentile: float = 50.0
    _cache: _StepValues = field(default_factory=_StepValues)

    def should_prune(self, number: int, history: Mapping[int, float]) -> bool:
        if not history:
            return False
        step = max(history)
        # Cheap checks first: they need no query and give the same answer Optuna's order would.
        if step < self.n_warmup_steps:
            return False
        if not _is_first_in_interval_step(step, list(history), self.n_warmup_steps, self.interval_steps):
            return False
        self._refresh()
        n_complete = self._cache.seen_seq
        if n_complete == 0 or n_complete < self.n_startup_trials:
            return False
        own = np.asarray(list(history.values()), dtype=float)
        if np.all(np.isnan(own)):
            return True
        best = float(np.nanmax(own) if self.maximize else np.nanmin(own))
        values = self._cache.finite.get(step, [])
        if self._cache.counts.get(step, 0) < self.n_min_trials or not values:
            return False
        percentile = 100 - self.percentile if self.maximize else self.percentile
        # numpy's "linear" method: interpolate between the neighbours of the virtual index.
        index = (len(values) - 1) * (percentile / 100)
        low = math.floor(index)
        p = _lerp(values[low], values[min(low + 1, len(values) - 1)], index - low)
        return best < p if self.maximize else best > p

    def _refresh(self) -> None:
        rows = self.db.fetch_all(
            select(StepValue.completion_seq, StepValue.step, StepValue.value)
            .where(StepValue.job_id == self.job_id, StepValue.completion_seq > self._cache.seen_seq)
        )
        for seq, step, value in rows:
            self._cache.seen_seq = max(self._cache.seen_seq, seq)
            self._cache.counts[step] = self._cache.counts.get(step, 0) + 1
            if value is not None and not math.isnan(value):
                bisect.insort(self._cache.finite.setdefault(step, []), float(value))


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's interpolation (``numpy.lib._function_base_impl._lerp``), bit for bit."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


@dataclass
class SqlHyperbandPruner:
    """Optuna's ``HyperbandPruner`` (explicit ``max_resource``) over ``regsearch_rung_values``.

    Each trial belongs to the bracket Optuna would give it (a CRC32 of study name and trial
    number); within a bracket, successive halving promotes the top ``1/reduction_factor`` of
    the values recorded at each rung by any trial of the bracket.
    """

    db: Database
    job_id: str
    study_name: str
    maximize: bool
    min_resource: int
    max_resource: int
    reduction_factor: int = HYPERBAND_REDUCTION_FACTOR
    bootstrap_count: int = 0

    def __post_init__(self) -> None:
        self.n_brackets = math.floor(math.log(self.max_resource / self.min_resource, self.reduction_factor)) + 1
        self.budgets = [self._allocation_budget(b) for b in range(self.n_brackets)]
        self._rungs: dict[int, int] = {}  # trial number -> current rung (this process's trials)

    def _allocation_budget(self, bracket: int) -> int:
        s = self.n_brackets - 1 - bracket
        return math.ceil(self.n_brackets * (self.reduction_factor**s) / (s + 1))

    def bracket_of(self, number: int) -> int:
        n = binascii.crc32(f"{self.study_name}_{number}".encode()) % sum(self.budgets)
        for bracket, budget in enumerate(self.budgets):
            n -= budget
            if n < 0:
                return bracket
        raise AssertionError("unreachable")

    def should_prune(self, number: int, history: Mapping[int, float]) -> bool:
        if not history:
            return False
        step = max(history)
        value = history[step]
        bracket = self.bracket_of(number)
        rung = self._current_rung(number)
        while True:
            promotion_step = self.min_resource * self.reduction_factor ** (bracket + rung)
            if step < promotion_step:
                return False
            if math.isnan(value):
                return True
            competing = self._record_and_compete(bracket, rung, number, value)
            self._rungs[number] = rung + 1
            if len(competing) <= self.bootstrap_count:
                return True
            if not self._promotable(value, competing):
                return True
            rung += 1

    def _current_rung(self, number: int) -> int:
        if number not in self._rungs:  # first check of this trial in this process
            with self.db.read() as session:
                self._rungs[number] = int(session.scalar(
                    select(func.count()).select_from(RungValue)
                    .where(RungValue.job_id == self.job_id, RungValue.trial_number == number)
                ) or 0)
        return self._rungs[number]

    def _record_and_compete(self, bracket: int, rung: int, number: int, value: float) -> list[float]:
        """Read the other trials' values at this rung, then record ours (one transaction)."""
        with self.db.session() as session:
            others = session.scalars(
                select(RungValue.value).where(
                    RungValue.job_id == self.job_id, RungValue.bracket == bracket, RungValue.rung == rung,
                    RungValue.trial_number != number,
                )
            ).all()
            session.execute(dialect_insert(self.db)(RungValue).values(
                job_id=self.job_id, bracket=bracket, rung=rung, trial_number=number, value=value
            ).on_conflict_do_nothing())
        return [float(v) for v in others] + [value]

    def _promotable(self, value: float, competing: list[float]) -> bool:
        promotable_idx = (len(competing) // self.reduction_factor) - 1
        if promotable_idx == -1:
            promotable_idx = 0
        competing.sort()
        if self.maximize:
            return value >= competing[-(promotable_idx + 1)]
        return value <= competing[promotable_idx]


@dataclass(frozen=True)
class PrunerSettings:
    """A job's pruner settings, the one place they are derived from the spec: both the SQL
    pruners here and Optuna's own (:func:`regsearch.store.studies.make_pruner`) are built from it."""

    kind: str  # "none", "median" or "hyperband"
    n_startup_trials: int = MEDIAN_STARTUP_TRIALS
    n_warmup_steps: int = 0
    min_resource: int = 1
    max_resource: int = 1
    reduction_factor: int = HYPERBAND_REDUCTION_FACTOR


def pruner_settings(spec: JobSpec) -> PrunerSettings:
    """What the spec asks for: median waits half the epochs (regularized configurations learn
    more slowly at first; judging them earlier would prune exactly the dropout-heavy trials this
    search exists to compare); hyperband's smallest budget is a tenth of the epochs. Several
    objectives are never pruned."""
    epochs = spec.training.epochs
    if spec.pruner == "none" or len(spec.objective.metrics) > 1:
        return PrunerSettings("none")
    if spec.pruner == "median":
        return PrunerSettings("median", n_warmup_steps=epochs // 2)
    return PrunerSettings("hyperband", min_resource=max(1, epochs // 10), max_resource=epochs)


def make_pruner(db: Database, spec: JobSpec, job_id: str, study_name: str) -> Pruner:
    """The job's pruner; the same settings as :func:`regsearch.store.studies.make_pruner` gives Optuna."""
    settings = pruner_settings(spec)
    maximize = spec.directions[0] == "maximize"
    if settings.kind == "median":
        return SqlMedianPruner(db, job_id, maximize, n_startup_trials=settings.n_startup_trials,
                               n_warmup_steps=settings.n_warmup_steps)
    if settings.kind == "hyperband":
        return SqlHyperbandPruner(db, job_id, study_name, maximize, min_resource=settings.min_resource,
                                  max_resource=settings.max_resource, reduction_factor=settings.reduction_factor)
    return NoPruning()
