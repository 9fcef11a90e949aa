"""Convergence to a common target: how fast a trial gets to a level every trial of the job is held to.

``epochs_to_95pct_best`` (formerly ``epochs_to_converge``: first epoch at 95% of the trial's *own*
best) rewards a trial that learns little: one stuck at val_acc 0.35 gets there at epoch 1. Here every trial of a job is
held to one target (docs/interface.md "Metrics"):

- **The target**: ``objective.target`` when the spec gives one (a val_acc, or a val_loss for a
  regression job), else :data:`DEFAULT_TARGET_SHARE` of the job's best (val_acc: 0.9 x the best
  val_acc; val_loss: the best val_loss / 0.9). It depends on the job's best, so it is computed at
  report time from the stored per-epoch rows (:func:`trial_convergence`), never by the worker.
- **Per trial** (the metric table's report-time entries, ``regsearch.domain.metrics.REPORT_TIME_METRICS``,
  which name and format them): ``epochs_to_target`` (the first epoch at or past the target), ``seconds_to_target``
  (training seconds up to and including that epoch), both None when the trial never got there: it
  is *censored* at the epochs it ran, never given an invented number; ``train_loss_area`` (the mean
  training loss over the epochs run: lower is faster and better fitting, defined for every trial).
- **Per group**: the share that reached the target and the median epochs (and seconds) to it by
  Kaplan-Meier, so a trial that never got there counts as "not yet at its last epoch" instead of
  being dropped (dropping it hides exactly what BN does) or given its last epoch (which would
  invent a value). The 95% interval of the median is Brookmeyer-Crowley's: the times whose
  pointwise Kaplan-Meier band (Greenwood's variance on the log(-log) scale) contains 0.5. Its upper
  end is None when the band never falls to 0.5 within the epochs run. A small implementation here
  (no dependency): tests check it against hand-computed values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regsearch.domain.metrics import REPORT_TIME_METRICS

# The metric table's names for what a trial is measured by here (its order: epochs, seconds, area).
EPOCHS_TO_TARGET, SECONDS_TO_TARGET, TRAIN_LOSS_AREA = REPORT_TIME_METRICS
DEFAULT_TARGET_SHARE = 0.9
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Target:
    metric: str  # val_acc (reached at or above) or val_loss (reached at or below)
    value: float
    source: str  # "objective.target" or "0.9 x the job's best val_acc (0.712)"

    def reached(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return False
        return value >= self.value if self.metric != "val_loss" else value <= self.value


def job_target(metric: str, given: float | None, best: float | None) -> Target | None:
    """The job's target on ``metric`` (val_acc or val_loss): ``given`` (objective.target), else
    the default share of ``best`` (the job's best value of ``metric``); None without either."""
    if given is not None:
        return Target(metric, float(given), "objective.target")
    if best is None or not math.isfinite(best):
        return None
    if metric == "val_loss":
        return Target(metric, best / DEFAULT_TARGET_SHARE,
                      f"the job's best val_loss ({best:.3f}) / {DEFAULT_TARGET_SHARE:g}")
    return Target(metric, DEFAULT_TARGET_SHARE * best,
                  f"{DEFAULT_TARGET_SHARE:g} x the job's best val_acc ({best:.3f})")


@dataclass(frozen=True)
class TrialConvergence:
    """One trial held to the target: ``metrics`` has exactly the report-time metrics (None: censored
    or no data); ``epochs_run`` and ``seconds_run`` are where a censored trial stopped being watched."""

    metrics: dict[str, float | None]
    epochs_run: int
    seconds_run: float

    def observation(self, name: str) -> tuple[float | None, float]:
        """(time to the target or None when censored, censoring time) in ``name``'s unit, for :func:`km_median`."""
        return self.metrics[name], (self.seconds_run if name == SECONDS_TO_TARGET else self.epochs_run)


def trial_convergence(epochs: Sequence[Mapping[str, Any]], target: Target) -> TrialConvergence:
    """``epochs_to_target``, ``seconds_to_target`` (None: censored), ``train_loss_area`` and the
    censoring times from a trial's per-epoch rows, in epoch order."""
    rows = sorted(epochs, key=lambda e: e.get("epoch") or 0)
    seconds = 0.0
    reached_at, seconds_at = None, None
    for i, row in enumerate(rows):
        seconds += float(row.get("seconds") or 0.0)
        if reached_at is None and target.reached(row.get(target.metric)):
            reached_at, seconds_at = int(row.get("epoch") or i + 1), seconds
    losses = [float(r["train_loss"]) for r in rows if _finite(r.get("train_loss"))]
    return TrialConvergence(
        metrics={EPOCHS_TO_TARGET: reached_at, SECONDS_TO_TARGET: seconds_at,
                 TRAIN_LOSS_AREA: sum(losses) / len(losses) if losses else None},
        epochs_run=len(rows), seconds_run=seconds)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Median:
    """A Kaplan-Meier median time to the target with its Brookmeyer-Crowley 95% interval."""

    n: int  # trials
    reached: int  # of them, those that got to the target (the rest are censored)
    median: float | None  # None: fewer than half are known to get there
    low: float | None
    high: float | None  # None: not bounded within the time observed

    @property
    def share(self) -> float | None:
        return self.reached / self.n if self.n else None


def km_median(observations: Iterable[tuple[float | None, float]]) -> Median:
    """Kaplan-Meier median of (time to the target or None when censored, censoring time) pairs."""
    obs = [(t, c) for t, c in observations]
    n = len(obs)
    events = sorted({float(t) for t, _ in obs if t is not None})
    reached = sum(t is not None for t, _ in obs)
    survival, greenwood = 1.0, 0.0
    median = low = high = None
    for time in events:
        at_risk = sum(1 for t, c in obs if (t if t is not None else c) >= time)
        deaths = sum(1 for t, _ in obs if t is not None and float(t) == time)
        survival *= 1 - deaths / at_risk
        if at_risk > deaths:
            greenwood += deaths / (at_risk * (at_risk - deaths))
        lower, upper = _band(survival, greenwood)
        if median is None and survival <= 0.5:
            median = time
        if low is None and lower <= 0.5:
            low = time
        if high is None and upper <= 0.5:
            high = time
    return Median(n=n, reached=reached, median=median, low=low, high=high)


def _band(survival: float, greenwood: float) -> tuple[float, float]:
    """The pointwise 95% band of S(t) on the log(-log) scale (Greenwood's variance)."""
    if survival <= 0.0:  # every trial still at risk got there
        return 0.0, 0.0
    if survival >= 1.0 or greenwood == 0.0:
        return survival, survival
    log_s = math.log(survival)
    spread = Z95 * math.sqrt(greenwood) / abs(log_s)
    return survival ** math.exp(spread), survival ** math.exp(-spread)


def separated(a: Median, b: Median) -> bool:
    """The two medians' intervals do not overlap (an open upper end reaches past everything)."""
    if a.median is None or b.median is None or a.low is None or b.low is None:
        return False
    a_high = math.inf if a.high is None else a.high
    b_high = math.inf if b.high is None else b.high
    return a_high < b.low or b_high < a.low
