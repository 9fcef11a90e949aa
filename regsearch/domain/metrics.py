"""What a trial measures: one definition (docs/interface.md "Metrics"), used by the worker, the API and the dashboard.

Per epoch: ``train_loss``, ``train_acc`` (a fixed training sample as large as the validation
split, evaluated in eval mode), ``val_loss``, ``val_acc``, ``seconds``.

Per trial: ``val_acc`` (best epoch), ``test_acc`` (test split, best-validation weights),
``gap`` (train_acc - val_acc at the best epoch), ``epochs_to_95pct_best`` (first epoch whose
val_acc reaches 95% of the trial's *own* best, formerly ``epochs_to_converge``: it rewards a trial
that learns little, so it is not a convergence speed and is named for what it is), ``mean_val_acc``
(mean val_acc over the epochs run), ``seconds_per_epoch``, ``epochs_run``.

Convergence speed is measured against a target common to the job's trials instead (it depends on
the job's best, so it is computed at report time from the per-epoch rows, never stored: the
table's entries with ``report_time``): ``epochs_to_target``, ``seconds_to_target`` (None when
never reached: censored) and ``train_loss_area`` (mean training loss over the epochs run),
:mod:`regsearch.domain.convergence`.
With ``training.bn_recalibrate`` and BN in the placement a trial also stores ``variance_shift``
(one ratio per BN slot), ``test_acc_before_recalibration`` and ``test_acc_after_recalibration``
(worker/variance_shift.py); ``variance_shift`` is measured for every trial with BN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

OWN_BEST_FRACTION = 0.95  # epochs_to_95pct_best's share of the trial's own best
Direction = Literal["maximize", "minimize"]
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Metric:
    """One per-trial metric: its better direction, whether a search may optimize it, its range.

    ``high=None`` is unbounded above, except for ``epochs_to_95pct_best``, which is bounded by the
    epochs run (``bounded_by_epochs``).
    """

    name: str
    direction: Direction
    objective: bool  # may be a search objective (test_acc never is: the test split is held out)
    low: float | None
    high: float | None
    shown: bool = True  # a column wherever a trial's metrics are listed
    bounded_by_epochs: bool = False
    decimals: int = 3  # fixed decimals wherever a value or a mean of it is printed (format_metric)
    label: str | None = None  # a column's heading where the name alone would mislead
    task: Task | None = "classification"  # the task whose trials have it (None: every task)
    # computed at report time from a trial's epoch rows relative to the job's target
    # (regsearch.domain.convergence), never stored with the trial: no column, no objective
    report_time: bool = False
    # the range on another task's trials where it differs from (low, high): (task, low, high) each
    task_ranges: tuple[tuple[Task, float | None, float | None], ...] = ()


# The one list of per-trial metrics, in the order every table shows them.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("val_acc", "maximize", True, 0.0, 1.0),
    Metric("test_acc", "maximize", False, 0.0, 1.0),
    # regression (task: regression): RMSE in the target's units, R^2 (1 - MSE / variance)
    Metric("val_rmse", "minimize", True, 0.0, None, task="regression"),
    Metric("val_r2", "maximize", True, None, 1.0, task="regression"),
    Metric("test_rmse", "minimize", False, 0.0, None, task="regression"),
    Metric("test_r2", "maximize", False, None, 1.0, task="regression"),
    # classification: train_acc - val_acc; regression: val_loss - train_loss (MSE), at the best epoch
    # (an accuracy difference lies in [-1, 1]; a difference of two MSEs can be any real number)
    Metric("gap", "minimize", True, -1.0, 1.0, task=None, task_ranges=(("regression", None, None),)),
    Metric("epochs_to_95pct_best", "minimize", True, 1.0, None, bounded_by_epochs=True, decimals=1,
           label="epochs to 95% of own best"),
    Metric("mean_val_acc", "maximize", True, 0.0, 1.0),
    Metric("seconds_per_epoch", "minimize", True, 0.0, None, task=None),
    Metric("val_loss", "minimize", True, 0.0, None, shown=False, task=None),
    # convergence to the job's common target (val_acc, or val_loss for regression), every task
    Metric("epochs_to_target", "minimize", False, 1.0, None, bounded_by_epochs=True, decimals=0,
           label="epochs to target", task=None, report_time=True),
    Metric("seconds_to_target", "minimize", False, 0.0, None, decimals=2, label="s to target", task=None,
           report_time=True),
    Metric("train_loss_area", "minimize", False, 0.0, None, label="train-loss area", task=None, report_time=True),
)}


def task_metrics(task: str = "classification", *, shown_only: bool = True) -> tuple[str, ...]:
    """The per-trial metrics a task's trials store, in table order (``shown_only``: the columns);
    the report-time ones (:data:`REPORT_TIME_METRICS`) are not stored, so never among them."""
    return tuple(name for name, m in METRICS.items()
                 if m.task in (None, task) and (m.shown or not shown_only) and not m.report_time)


SHOWN_METRICS = task_metrics("classification")  # a classification job's columns (the default task)
OBJECTIVE_METRICS = tuple(name for name, m in METRICS.items() if m.objective)
DIRECTIONS: dict[str, Direction] = {name: m.direction for name, m in METRICS.items()}
SUMMARY_FIELDS = (*task_metrics("classification", shown_only=False), "epochs_run")  # a classification trial's
# Per trial at report time, relative to the job's target: what regsearch.domain.convergence computes.
REPORT_TIME_METRICS = tuple(name for name, m in METRICS.items() if m.report_time)

# Former metric names, still read: a spec's objective naming one means the new name (migrations
# 0007 and 0009 renamed them in stored trials and specs). ``val_auc`` read like a ROC AUC;
# ``epochs_to_converge`` like a convergence speed (it is relative to the trial's own best).
RENAMED_METRICS: dict[str, str] = {"val_auc": "mean_val_acc", "epochs_to_converge": "epochs_to_95pct_best"}


def current_metric_name(name: str) -> str:
    """``name``, or the metric's current name where ``name`` is a former one (RENAMED_METRICS)."""
    return RENAMED_METRICS.get(name, name)


NO_VALUE = "–"  # printed for a metric a trial or a group does not have


def format_metric(name: str | None, value: float | None) -> str:
    """One format per metric: ``0.647`` (accuracies, gap, seconds, loss: 3 decimals), ``4.5`` (a
    mean of epochs_to_95pct_best); an integer (one trial's epochs_to_95pct_best) prints as one.

    Every value of a column then has the same decimals, and a mean, its interval and its sd
    read alike. A metric not in :data:`METRICS` gets 3 decimals.
    """
    if value is None:
        return NO_VALUE
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    metric = METRICS.get(name or "")
    return f"{float(value):.{metric.decimals if metric else 3}f}"


def metric_bounds(name: str | None, *, epochs: int | None = None,
                  task: str = "classification") -> tuple[float, float]:
    """The range ``(low, high)`` of a metric on ``task``'s trials (and so of its mean and of any
    interval shown for it): the gap of a regression job is unbounded, a classification one's is [-1, 1].

    ``epochs`` (the job's training epochs) closes the range of ``epochs_to_95pct_best``; without it,
    and for a metric not in :data:`METRICS`, the open side is infinite.
    """
    metric = METRICS.get(name or "")
    if metric is None:
        return -math.inf, math.inf
    low_, high_ = next(((lo, hi) for t, lo, hi in metric.task_ranges if t == task), (metric.low, metric.high))
    low = -math.inf if low_ is None else float(low_)
    high = math.inf if high_ is None else float(high_)
    if metric.bounded_by_epochs and epochs is not None and epochs >= low:
        high = min(high, float(epochs))
    return low, high


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch of one trial; ``epoch`` counts from 1."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def epoch_rank(e: EpochMetrics) -> tuple[float, float]:
    """The order of a trial's epochs, lower is better: highest val_acc, then lowest val_loss (a
    non-finite value is the worst). The built-in training loops keep the best epoch's weights by it."""
    acc = e.val_acc if math.isfinite(e.val_acc) else -math.inf
    loss = e.val_loss if math.isfinite(e.val_loss) else math.inf
    return (-acc, loss)


def best_epoch_index(epochs: Sequence[EpochMetrics]) -> int:
    """Index of the best validation epoch (:func:`epoch_rank`), the earliest of equals."""
    if not epochs:
        raise ValueError("no epochs")
    return min(range(len(epochs)), key=lambda i: (*epoch_rank(epochs[i]), i))


def epochs_to_95pct_best(val_accs: Sequence[float]) -> int:
    """First epoch (1-based) whose val_acc reaches 95% (:data:`OWN_BEST_FRACTION`) of the trial's own best."""
    best = max(val_accs)
    target = OWN_BEST_FRACTION * best
    for i, acc in enumerate(val_accs):
        if acc >= target:
            return i + 1
    return len(val_accs)


def summarize(epochs: Sequence[EpochMetrics], test_acc: float | None, task: str = "classification") -> dict[str, Any]:
    """The per-trial summary from the epochs run and the test accuracy of the best weights.

    A regression trial's (its epochs carry losses only, the MSE): the best epoch is the lowest
    val_loss; ``val_rmse`` its square root, ``gap`` val_loss - train_loss there. ``val_r2``,
    ``test_rmse`` and ``test_r2`` need the data: the loop measures them (None until then)."""
    if not epochs:
        raise ValueError("a trial summary needs at least one epoch")
    best = epochs[best_epoch_index(epochs)]
    if task == "regression":
        return {
            "val_rmse": math.sqrt(best.val_loss) if best.val_loss >= 0 else math.nan,
            "val_r2": None, "test_rmse": None, "test_r2": None,
            "val_loss": best.val_loss,
            "gap": best.val_loss - best.train_loss,
            "best_epoch": best.epoch,
            "seconds_per_epoch": sum(e.seconds for e in epochs) / len(epochs),
            "epochs_run": len(epochs),
        }
    val_accs = [e.val_acc for e in epochs]
    return {
        "val_acc": best.val_acc,
        "val_loss": best.val_loss,
        "test_acc": test_acc,
        "gap": best.train_acc - best.val_acc,
        "best_epoch": best.epoch,
        "epochs_to_95pct_best": epochs_to_95pct_best(val_accs),
        "mean_val_acc": sum(val_accs) / len(val_accs),
        "seconds_per_epoch": sum(e.seconds for e in epochs) / len(epochs),
        "epochs_run": len(epochs),
    }
