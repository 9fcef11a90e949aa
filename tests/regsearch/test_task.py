"""task: regression in the spec: its dataset kinds, its objective (val_rmse by default), no packing;
the metric table says which metrics each task has (regsearch.domain.task, metrics)."""

from __future__ import annotations

from typing import Any

import pytest

from regsearch.domain.metrics import (
    DIRECTIONS,
    SHOWN_METRICS,
    EpochMetrics,
    summarize,
    task_metrics,
)
from regsearch.domain.spec import SpecError, validate_spec


def spec(**extra: Any) -> dict[str, Any]:
    return {"name": "r", "task": "regression", "dataset": {"name": "npz", "path": "d.npz"}, **extra}


def test_a_regression_spec() -> None:
    job = validate_spec(spec())
    assert job.objective.metrics == ["val_rmse"] and job.directions == ["minimize"]
    assert validate_spec(spec(objective={"metrics": ["val_r2"]})).directions == ["maximize"]
    assert validate_spec({"name": "c", "dataset": {"name": "digits"}}).task == "classification"


@pytest.mark.parametrize(("document", "field", "words"), [
    (spec(dataset={"name": "mnist1d"}), "task", "holds classes"),
    (spec(objective={"metrics": ["val_acc"]}), "objective.metrics", "not a metric of a regression job"),
    ({"name": "c", "dataset": {"name": "digits"}, "objective": {"metrics": ["val_rmse"]}}, "objective.metrics",
     "not a metric of a classification job"),
    (spec(budget={"pack": 2}), "budget.pack", "regression job uses pack: 1"),
    (spec(task="ranking"), "task", ""),
])
def test_what_does_not_fit_the_task_is_named(document: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as error:
        validate_spec(document)
    assert error.value.field == field and words in error.value.message, error.value


def test_the_metric_table_per_task() -> None:
    assert task_metrics("regression") == ("val_rmse", "val_r2", "test_rmse", "test_r2", "gap", "seconds_per_epoch")
    assert SHOWN_METRICS == task_metrics("classification") and "val_rmse" not in SHOWN_METRICS
    assert DIRECTIONS["val_rmse"] == "minimize" and DIRECTIONS["val_r2"] == "maximize"
    epochs = [EpochMetrics(1, 400.0, float("nan"), 900.0, float("nan"), 0.1),
              EpochMetrics(2, 100.0, float("nan"), 625.0, float("nan"), 0.1)]
    summary = summarize(epochs, None, "regression")
    assert summary["val_rmse"] == 25.0 and summary["gap"] == 525.0 and summary["best_epoch"] == 2
