"""Summary statistics with their uncertainty: the one definition of "mean and 95% interval".

Both the confirmation runs (best-k ranked by the mean over seeds) and the job report use it, so
the numbers a user sees in the API, the CLI and the dashboard agree to the last digit.

The interval is Student-t's over the runs, cut at the metric's range
(:func:`regsearch.domain.metrics.metric_bounds`: an accuracy's mean cannot leave [0, 1]). The true
mean always lies in that range, so cutting there never loses coverage: the cut interval holds
the true mean whenever the t-interval does, and it shows no impossible values. ``clipped`` says
that it was cut. Below :data:`MIN_RUNS` runs there is no interval at all (``too_few_runs``): with
two runs the t quantile is 12.7 and the interval says nothing the range does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as scipy_stats

from regsearch.domain.metrics import metric_bounds

CONFIDENCE = 0.95
MIN_RUNS = 3  # fewer runs than this get no interval: "too few runs"
TOO_FEW_RUNS = "too few runs"


class Interval(BaseModel):
    """``n`` finite values summarized: mean, sample std (ddof=1) and a Student-t 95% interval
    cut at the metric's range.

    With one value the std is None: one run says nothing about its spread. With fewer than
    :data:`MIN_RUNS` values the interval is None and ``too_few_runs`` is set. ``clipped``: the
    t-interval reached past the metric's range and was cut at its bound.

    The one declaration of an interval's shape: the report (``regsearch.evidence``) and the API's
    ``confirmation`` answer with this model as it is.
    """

    model_config = ConfigDict(frozen=True)

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None
    too_few_runs: bool = Field(default=False, description="fewer than 3 runs: no interval (low/high null)")
    clipped: bool = Field(default=False, description="the t-interval reached past the metric's range and was cut "
                                                     "at its bound")

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2


def finite(values: Iterable[Any]) -> list[float]:
    """The values that are real numbers (None, NaN and infinities dropped)."""
    kept = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            kept.append(float(value))
    return kept


def mean_interval(values: Iterable[Any], metric: str | None = None, *, epochs: int | None = None,
                  task: str = "classification", confidence: float = CONFIDENCE) -> Interval:
    """Mean, std and the 95% interval of the finite ``values`` of ``metric``.

    The interval is Student-t's, cut at ``metric_bounds(metric, epochs=epochs, task=task)`` (the
    metric's range on the job's task); None below
    :data:`MIN_RUNS` values. ``metric=None`` (or a metric without a range) is not cut.
    """
    data = finite(values)
    n = len(data)
    if n == 0:
        return Interval(n=0, mean=None, std=None, low=None, high=None, too_few_runs=True)
    mean = math.fsum(data) / n
    if n == 1:
        return Interval(n=1, mean=mean, std=None, low=None, high=None, too_few_runs=True)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in data) / (n - 1))
    if n < MIN_RUNS:
        return Interval(n=n, mean=mean, std=std, low=None, high=None, too_few_runs=True)
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    bound_low, bound_high = metric_bounds(metric, epochs=epochs, task=task)
    low = min(max(mean - half, bound_low), bound_high)
    high = max(min(mean + half, bound_high), bound_low)
    clipped = low != mean - half or high != mean + half
    return Interval(n=n, mean=mean, std=std, low=low, high=high, clipped=clipped)
