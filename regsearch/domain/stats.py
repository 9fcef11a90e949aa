"""Summary statistics with their uncertainty: the one definition of "mean and 95% interval".

Both the confirmation runs (best-k ranked by the mean over seeds) and the job report use it, so
the numbers a user sees in the API, the CLI and the dashboard agree to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as scipy_stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """``n`` finite values summarized: mean, sample std (ddof=1) and a Student-t 95% interval.

    With one value the std and the interval are None: one run says nothing about its spread.
    """

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

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


def mean_interval(values: Iterable[Any], confidence: float = CONFIDENCE) -> Interval:
    """Mean, std and the t-interval of the finite ``values``."""
    data = finite(values)
    n = len(data)
    if n == 0:
        return Interval(0, None, None, None, None)
    mean = math.fsum(data) / n
    if n == 1:
        return Interval(1, mean, None, None, None)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in data) / (n - 1))
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)
