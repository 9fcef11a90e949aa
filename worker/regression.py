"""Regression (``task: regression``): the mean squared error, RMSE and R^2 (pure PyTorch).

The data (``regsearch.worker.datasets.load_regression``): npz ``y`` (and ``y_test``) or csv
``label_column`` as floats, split like classification data (without stratifying) and
standardized with the training split's statistics, the targets too, so one learning rate fits
any target scale. The loop trains on the standardized MSE; every
loss it reports (per epoch train_loss and val_loss, hence gap = val_loss - train_loss at the best
epoch) is in the target's units squared, and ``val_rmse`` / ``test_rmse`` in its units.
``val_r2`` and ``test_r2`` are 1 - MSE / variance of that split's targets, with the best
validation epoch's weights.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import TrainingSpec
from regsearch.worker.loop import (
    EVAL_CHUNK,
    NonFiniteLossError,
    TrialRecorder,
    snapshot_state,
    start_loop,
)


def _squared_error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: Any) -> torch.Tensor:
    """The summed squared error on the device (standardized units)."""
    total = torch.zeros((), device=x.device)
    for start in range(0, len(x), EVAL_CHUNK):
        with autocast():
            out = model(x[start : start + EVAL_CHUNK]).float().reshape(-1)
        total += F.mse_loss(out, y[start : start + EVAL_CHUNK], reduction="sum")
    return total


def train_regression(recipe: dict[str, Any], training: TrainingSpec, data: Any, recorder: TrialRecorder,
                     y_std: float) -> None:
    """The built-in loop for regression: MSE, the spec's optimizer and recipe (schedule, clipping);
    ``y_std`` (the targets' scale) turns the standardized losses into the target's units."""
    device, scale = data.device, y_std ** 2
    run = start_loop(recipe, training, data)
    model, shape, autocast = run.model, run.shape, run.autocast
    x_train, y_train, x_sample, y_sample, x_val, y_val = (
        run.x_train, run.y_train, run.x_sample, run.y_sample, run.x_val, run.y_val)
    n, batch, starts = len(y_train), training.batch_size, run.starts
    for epoch in range(1, training.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=run.generator, device=device)
        for start in starts:
            index = order[start : start + batch]
            with autocast():
                loss = F.mse_loss(model(x_train[index]).float().reshape(-1), y_train[index])
            run.step(loss)
        model.eval()
        with torch.inference_mode():
            sums = torch.stack([_squared_error(model, x_sample, y_sample, autocast),
                                _squared_error(model, x_val, y_val, autocast)]).tolist()  # the epoch's one sync
        train_mse, val_mse = sums[0] / len(y_sample) * scale, sums[1] / len(y_val) * scale
        if not math.isfinite(train_mse):
            raise NonFiniteLossError(epoch, train_mse)
        metrics = EpochMetrics(epoch=epoch, train_loss=train_mse, train_acc=math.nan, val_loss=val_mse,
                               val_acc=math.nan, seconds=time.perf_counter() - started)
        stop = recorder.report(metrics)
        if recorder.improves(metrics):
            recorder.save_best(model.state_dict())
        if stop:
            break
    assert recorder.best_state is not None
    snapshot_state(recorder.best_state, model.state_dict())
    model.eval()
    with torch.inference_mode():
        x_test = data.x_test.reshape(-1, *shape)
        val_sse = _squared_error(model, x_val, y_val, autocast).item()
        test_sse = _squared_error(model, x_test, data.y_test, autocast).item()
    recorder.test(test_rmse=math.sqrt(test_sse / len(data.y_test) * scale),
                  test_r2=_r2(test_sse, data.y_test), val_r2=_r2(val_sse, y_val))


def _r2(sse: float, y: torch.Tensor) -> float:
    """1 - SSE / total sum of squares (the scale cancels: both are in standardized units)."""
    total = float(((y - y.mean()) ** 2).sum().item())
    return 1.0 - sse / total if total > 0 else math.nan
