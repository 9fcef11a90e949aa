"""The one interval (regsearch.domain.stats.mean_interval): Student-t, cut at the metric's range,
none below 3 runs; checked against scipy directly and on adversarial small samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from regsearch.domain.confirm import group_interval
from regsearch.domain.metrics import metric_bounds
from regsearch.domain.stats import MIN_RUNS, mean_interval

# What each metric can be, written out here (not read from regsearch.domain.metrics).
RANGES = {"val_acc": (0.0, 1.0), "test_acc": (0.0, 1.0), "mean_val_acc": (0.0, 1.0), "gap": (-1.0, 1.0),
          "seconds_per_epoch": (0.0, math.inf)}

ADVERSARIAL = {
    "val_acc": [[0.99, 1.0, 1.0], [0.0, 0.0, 0.02], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.5], [0.97, 0.999, 1.0, 1.0]],
    "test_acc": [[0.99, 1.0, 1.0], [0.01, 0.0, 0.0]],
    "mean_val_acc": [[0.98, 1.0, 0.995], [0.0, 0.5, 0.0]],
    "gap": [[0.99, 1.0, 1.0], [-1.0, -0.98, -1.0], [-1.0, 1.0, 1.0]],
    "seconds_per_epoch": [[0.0, 0.0, 0.5], [0.001, 0.002, 0.9]],
}


def t_interval(values: list[float]) -> tuple[float, float]:
    data = np.asarray(values, dtype=float)
    low, high = scipy_stats.t.interval(0.95, len(data) - 1, loc=data.mean(), scale=data.std(ddof=1) / math.sqrt(len(data)))
    return float(low), float(high)


@pytest.mark.parametrize(("metric", "values"), [(m, v) for m, samples in ADVERSARIAL.items() for v in samples])
def test_no_interval_leaves_its_metrics_range(metric: str, values: list[float]) -> None:
    bottom, top = RANGES[metric]
    interval = mean_interval(values, metric)
    assert interval.low is not None and interval.high is not None
    assert bottom <= interval.low <= interval.mean <= interval.high <= top  # type: ignore[operator]
    raw_low, raw_high = t_interval(values)
    assert raw_low < bottom or raw_high > top, "the sample is adversarial: Student-t alone leaves the range"
    assert interval.clipped
    # cut, not moved: the end inside the range is Student-t's
    assert interval.low == pytest.approx(max(raw_low, bottom)) and interval.high == pytest.approx(min(raw_high, top))


def test_an_interval_inside_the_range_is_student_t_and_not_flagged() -> None:
    values = [0.61, 0.64, 0.60, 0.63]
    interval = mean_interval(values, "val_acc")
    assert (interval.low, interval.high) == pytest.approx(t_interval(values))
    assert not interval.clipped and not interval.too_few_runs


def test_epochs_to_95pct_best_stays_between_one_and_the_epochs_trained() -> None:
    low_side = mean_interval([1, 1, 3], "epochs_to_95pct_best", epochs=10)
    assert low_side.low == 1.0 and low_side.clipped
    high_side = mean_interval([10, 10, 7], "epochs_to_95pct_best", epochs=10)
    assert high_side.high == 10.0 and high_side.clipped
    assert mean_interval([10, 10, 7], "epochs_to_95pct_best").high > 10, "no epochs known: open above"  # type: ignore[operator]
    # the trial dicts' own epochs_run closes the range (the report and the API's confirmation intervals)
    runs = [{"metrics": {"epochs_to_95pct_best": e, "epochs_run": 10}} for e in (10, 10, 7)]
    assert group_interval(runs, "epochs_to_95pct_best").high == 10.0
    assert metric_bounds("epochs_to_95pct_best", epochs=10) == (1.0, 10.0)


@pytest.mark.parametrize("values", [[], [0.5], [0.1, 0.9], [1.0, 1.0]])
def test_fewer_than_three_runs_have_no_interval(values: list[float]) -> None:
    interval = mean_interval(values, "val_acc")
    assert interval.n == len(values) < MIN_RUNS
    assert interval.too_few_runs and interval.low is None and interval.high is None
    assert interval.as_dict()["too_few_runs"] is True
    if len(values) == 2:
        assert interval.std == pytest.approx(float(np.std(values, ddof=1))), "the spread of two runs is still shown"


def test_a_metric_without_a_range_is_not_cut() -> None:
    values = [0.99, 1.0, 1.0]
    interval = mean_interval(values)
    assert (interval.low, interval.high) == pytest.approx(t_interval(values)) and not interval.clipped
    assert metric_bounds("no such metric") == (-math.inf, math.inf)


def test_a_metric_is_cut_at_its_range_on_the_jobs_task() -> None:
    # a regression gap is val_loss - train_loss (a difference of two MSEs): any real number; a
    # classification gap (train_acc - val_acc) stays in [-1, 1]
    assert metric_bounds("gap", task="regression") == (-math.inf, math.inf)
    assert metric_bounds("gap", task="classification") == metric_bounds("gap") == (-1.0, 1.0)
    gaps = [1.4, 1.5, 1.6, 1.7]
    regression = mean_interval(gaps, "gap", task="regression")
    assert not regression.clipped
    assert (regression.low, regression.high) == pytest.approx(t_interval(gaps))
    assert regression.low > 1.0  # it printed "[1.000, 1.000]" when cut at the classification range
    classification = mean_interval(gaps, "gap")
    assert classification.clipped and classification.high == 1.0
    runs = [{"metrics": {"gap": g}} for g in gaps]
    assert group_interval(runs, "gap", "regression").high == pytest.approx(t_interval(gaps)[1])
