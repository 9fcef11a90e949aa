"""The job's task (the spec's ``task``): classification (the default) or regression.

A regression job reads float targets (npz ``y``, csv ``label_column``), trains on the mean squared
error and has its own metrics (``regsearch.domain.metrics.task_metrics``): val_rmse, val_r2,
test_rmse, test_r2, gap = val_loss - train_loss at the best epoch. Its objective is ``val_rmse``
unless the spec names one of its metrics. The packed loop is classification's only.
"""

from __future__ import annotations

from typing import Any

from regsearch.domain.metrics import OBJECTIVE_METRICS, task_metrics

REGRESSION_DATASETS = ("npz", "csv")


class TaskError(ValueError):
    """A spec whose parts do not fit its task; ``field`` names the part, as ``SpecError`` does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_task(spec: Any) -> None:
    """The spec's dataset, objective and packing fit its task (a regression job's default
    objective becomes val_rmse here); :class:`TaskError` naming the field otherwise."""
    task = spec.task
    if task == "regression":
        if spec.dataset.name not in REGRESSION_DATASETS:
            raise TaskError("task", f"regression reads float targets from npz (y) or csv (label_column); "
                                    f"dataset {spec.dataset.name!r} holds classes")
        if "objective" not in spec.model_fields_set:  # the frozen spec's default objective, replaced
            object.__setattr__(spec, "objective", type(spec.objective)(metrics=["val_rmse"]))
        if spec.budget.pack > 1:
            raise TaskError("budget.pack", "packed training is for classification; a regression job uses pack: 1")
    allowed = task_metrics(task, shown_only=False)
    for metric in spec.objective.metrics:
        if metric not in allowed:
            names = ", ".join(m for m in allowed if m in OBJECTIVE_METRICS)
            raise TaskError("objective.metrics", f"{metric!r} is not a metric of a {task} job (its objectives: {names})")
