"""The training loop: one regularization configuration, epoch by epoch (pure PyTorch).

Data lives on the device as tensors and batches are ``randperm`` slices, not a DataLoader: for the
small models this service compares, a DataLoader's per-batch Python work would cost more than the
model. Each epoch does exactly one host sync (the metrics), so a CUDA run never stalls inside the
batch loop. CPU runs with the same seed are bit-reproducible; CUDA runs use bfloat16 autocast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from regsearch.domain.devices import parse_device
from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import TrainingSpec
from regsearch.worker.augment import Augment, make_augment
from regsearch.worker.datafiles import DatasetError
from regsearch.worker.datasets import Splits
from regsearch.worker.loop import (
    TrainResult,
    TrialRecorder,
    accuracy,
    epoch_metrics,
    evaluate,
    snapshot_state,
    start_loop,
)
from regsearch.worker.variance_shift import after_training

TRAIN_SAMPLE_SEED = 0  # the fixed training sample is the same for every trial of a dataset
FIT_FRACTION = 0.5  # a dataset may take at most this share of a device's free memory


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    try:
        parsed = parse_device(requested)
    except ValueError as exc:
        raise ValueError(f"device: {exc}") from None
    if parsed.kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if parsed.kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device: {requested!r} requested but CUDA is not available here")
    index = parsed.index or 0
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device: {requested!r} does not exist ({torch.cuda.device_count()} GPU(s) visible)"
        )
    return torch.device("cuda", index)


@dataclass
class DeviceData:
    """A dataset's splits as device tensors, plus the fixed sample used for train metrics.

    A trainer plugin gets the same type as ``TrainerContext.data`` (regsearch.worker.trainers):
    there the splits are shaped as the model's input (``sample_shape``) and ``augment`` is the
    job's augmentation (or None)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_train_sample: torch.Tensor
    y_train_sample: torch.Tensor
    sample_shape: tuple[int, ...]
    n_classes: int
    name: str
    device: torch.device
    y_std: float = 1.0  # a regression job's target scale (regsearch.worker.regression)
    augment: Augment | None = None


def free_bytes(device: torch.device) -> int:
    """Memory free on ``device``: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(splits: Splits, device: torch.device) -> None:
    """Refuse a dataset that would not fit on ``device`` beside a model, naming both sizes."""
    need, free = splits.nbytes, free_bytes(device)
    if need > FIT_FRACTION * free:
        raise DatasetError(
            f"dataset: {splits.name} needs {need / 2**20:,.1f} MiB as tensors, more than "
            f"{FIT_FRACTION:.0%} of the {free / 2**20:,.1f} MiB free on {device}; "
            "use a smaller dataset.size or a device with more memory")


def to_device(splits: Splits, device: torch.device | str = "cpu") -> DeviceData:
    """Copy ``splits`` to ``device`` once; trials then index it without further transfers."""
    device = torch.device(device)
    check_fits(splits, device)

    def put(array: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(array, dtype=dtype, device=device)  # a copy: the arrays are read-only

    target = torch.float32 if splits.y_train.dtype.kind == "f" else torch.int64  # regression: float targets
    x_train, y_train = put(splits.x_train, torch.float32), put(splits.y_train, target)
    # as large as the validation split, chosen once, so train and val accuracy are comparable
    generator = torch.Generator().manual_seed(TRAIN_SAMPLE_SEED)
    size = min(len(splits.y_val), len(splits.y_train))
    sample = torch.randperm(len(splits.y_train), generator=generator)[:size].to(device)
    return DeviceData(
        x_train=x_train,
        y_train=y_train,
        x_val=put(splits.x_val, torch.float32),
        y_val=put(splits.y_val, target),
        x_test=put(splits.x_test, torch.float32),
        y_test=put(splits.y_test, target),
        x_train_sample=x_train[sample],
        y_train_sample=y_train[sample],
        sample_shape=tuple(splits.sample_shape),
        n_classes=splits.n_classes,
        name=splits.name,
        device=device,
        y_std=float(getattr(splits, "y_std", 1.0)),
    )


def train_trial(
    recipe: dict[str, Any],
    training: TrainingSpec,
    data: DeviceData,
    *,
    on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
) -> TrainResult:
    """Train ``recipe`` on ``data``; ``on_epoch`` returning True stops after that epoch."""
    recorder = TrialRecorder(str(data.device), on_epoch)
    train_builtin(recipe, training, data, recorder)
    return recorder.result()


def train_builtin(recipe: dict[str, Any], training: TrainingSpec, data: DeviceData, recorder: TrialRecorder) -> None:
    """The built-in loop: classification, cross-entropy (``training.label_smoothing``), the spec's
    optimizer at ``training.lr`` times ``training.schedule``'s factor, gradients clipped to
    ``training.grad_clip``.

    It speaks to the trial only through ``recorder``: each epoch's metrics (``report``, which says
    whether to stop), the weights it considers best (``save_best``, by ``epoch_rank``) and the test
    accuracy it measured with them (``test``).
    """
    device = data.device
    # views, not copies: the same device tensors serve every trial of the process
    run = start_loop(recipe, training, data)
    model, shape, autocast = run.model, run.shape, run.autocast
    x_train, y_train, x_sample, y_sample, x_val, y_val = (
        run.x_train, run.y_train, run.x_sample, run.y_sample, run.x_val, run.y_val)
    augment = make_augment(training.augment, tuple(data.sample_shape), training.seed, device)

    n, batch, starts = len(y_train), training.batch_size, run.starts
    smoothing = training.label_smoothing
    for epoch in range(1, training.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=run.generator, device=device)
        loss_sum = torch.zeros((), device=device)
        for start in starts:
            index = order[start : start + batch]
            inputs = x_train[index] if augment is None else augment(data.x_train[index]).reshape(-1, *shape)
            with autocast():
                loss = F.cross_entropy(model(inputs), y_train[index], label_smoothing=smoothing)
            run.step(loss)
            loss_sum += loss.detach()  # stays on the device: no sync per batch

        model.eval()
        with torch.inference_mode():
            sample = evaluate(model, x_sample, y_sample, autocast)
            val = evaluate(model, x_val, y_val, autocast)
            stats = torch.cat([loss_sum.reshape(1), sample, val]).tolist()  # the epoch's one sync
        metrics = epoch_metrics(epoch, stats, len(y_sample), len(y_val), time.perf_counter() - started)
        stop = recorder.report(metrics)
        if recorder.improves(metrics):
            recorder.save_best(model.state_dict())
        if stop:
            break

    assert recorder.best_state is not None  # at least one epoch ran (TrainingSpec: epochs >= 1)
    if recorder.best_epoch != recorder.epochs[-1].epoch:
        # the weights still hold the last epoch's: bring back the best one's (as load_state_dict
        # does, tensor by tensor, without its per-module Python work); when the last epoch is the
        # best, the model is already exactly best_state
        snapshot_state(recorder.best_state, model.state_dict())
    x_test = data.x_test.reshape(-1, *shape)
    recorder.test(test_acc=accuracy(model, x_test, data.y_test, autocast))
    # the variance shift per BN slot, and with training.bn_recalibrate its repair, measured on the
    # best weights after they were kept (worker/variance_shift.py)
    recorder.measured.update(after_training(
        model, recalibrate=training.bn_recalibrate, x_val=x_val, x_train=x_train, batch_size=training.batch_size,
        test_accuracy=lambda: accuracy(model, x_test, data.y_test, autocast)))
