"""The training-loop core that the unpacked and the packed loop share (pure PyTorch).

:func:`regsearch.worker.train.train_trial` (one model) and
:func:`regsearch.worker.packed.train_packed` (several as one) differ in how a batch goes through
the model; the rest of an epoch is here, once: the device's autocast and cudnn setting, the batch
starts, the checks before training, the epoch's metrics from its one host sync, evaluation and
the test measurement.

A trial's side of the loop is a :class:`TrialRecorder`: the loop reports each epoch (``report``,
which says whether to stop), hands over the weights it considers best (``save_best``) and the test
metrics it measured with them (``test``); ``result()`` is the trial's :class:`TrainResult`. The
built-in loops decide "best" with ``regsearch.domain.metrics.epoch_rank``; the recorder keeps
what it is given, so a loop written elsewhere can talk to it the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from regsearch.domain.metrics import EpochMetrics, epoch_rank, summarize
from regsearch.domain.recipe import lr_factor
from regsearch.domain.spec import TrainingSpec
from regsearch.worker.models import build_model

EVAL_CHUNK = 8192  # examples per forward pass in evaluation: bounds memory on large splits

Autocast = Callable[[], Any]  # a context manager factory: bfloat16 autocast on CUDA, else nothing


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (diverged, or non-finite data)."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training loss became {value} in epoch {epoch}; lower the learning rate")
        self.epoch = epoch
        self.value = value


@dataclass
class TrainResult:
    """Per-epoch metrics, the trial summary (``regsearch.domain.metrics.summarize``) and how it ended."""

    epochs: list[EpochMetrics]
    summary: dict[str, Any]
    stopped_early: bool
    device: str
    # The best validation epoch's weights (on the device): what test_acc was measured with,
    # what the worker saves for a complete trial (regsearch.worker.weights).
    best_state: dict[str, torch.Tensor] | None = None


def autocast_for(device: torch.device) -> Autocast:
    """bfloat16 autocast on CUDA (and cudnn's kernel search: the shapes are fixed), else nothing."""
    if device.type != "cuda":
        return contextlib.nullcontext
    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels once
    return lambda: torch.autocast("cuda", dtype=torch.bfloat16)


def check_input_shape(shape: Sequence[int], sample_shape: Sequence[int]) -> None:
    """A recipe's input shape must hold the data's examples."""
    if math.prod(shape) != math.prod(sample_shape):
        raise ValueError(
            f"recipe.input_shape: {list(shape)} does not fit examples shaped {list(sample_shape)}"
        )


def check_bn_batch(model: nn.Module, batch_size: int) -> None:
    """Batch normalization has no batch statistics for a batch of one."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and batch_size < 2:
        raise ValueError("training.batch_size: batch normalization needs batches of at least 2")


def batch_starts(n: int, batch: int) -> list[int]:
    """Where each batch of an epoch over ``n`` examples starts."""
    starts = list(range(0, n, batch))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()  # BN has no batch statistics for a lone example: drop a trailing batch of one
    return starts


def make_optimizer(
    model: nn.Module, training: TrainingSpec, *, member_dims: int = 0, fused: bool | None = None
) -> torch.optim.Optimizer:
    """adam / adamw / sgd; weight decay applies to weight matrices and kernels only.

    ``member_dims``: leading dimensions that stack several models' parameters (1 for a packed
    model, ``regsearch.worker.packed``), not counted when telling a matrix from a vector.
    ``fused``: Adam's one-kernel step; by default on CUDA only.
    """
    params: Any = list(model.parameters())
    if training.weight_decay > 0:
        # decaying biases and BN's scale/shift only fights the normalization (nanoGPT does the same)
        matrix = 2 + member_dims
        params = [
            {"params": [p for p in params if p.ndim >= matrix], "weight_decay": training.weight_decay},
            {"params": [p for p in params if p.ndim < matrix], "weight_decay": 0.0},
        ]
    if fused is None:
        fused = True if next(model.parameters()).is_cuda else None  # one kernel per step on GPU
    if training.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay
        )
    optimizer_class = torch.optim.AdamW if training.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(params, lr=training.lr, weight_decay=training.weight_decay, fused=fused)


@dataclass
class ModelLoop:
    """One model's training loop as every built-in loop sets it up (classification and regression):
    the model seeded by ``training.seed``, the splits as views shaped as its input, the autocast,
    the optimizer, the batch order's own generator and the batch starts."""

    model: nn.Module
    shape: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_sample: torch.Tensor
    y_sample: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    autocast: Autocast
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    starts: list[int]
    training: TrainingSpec
    steps: int = 0

    def step(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``: gradients clipped to ``training.grad_clip`` (on the
        device: no sync), the rate of ``training.schedule`` for this step (regsearch.domain.recipe)."""
        training = self.training
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if training.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), training.grad_clip)
        if training.schedule is not None:
            rate = training.lr * lr_factor(training.schedule, self.steps, len(self.starts), training.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        self.optimizer.step()
        self.steps += 1


def start_loop(recipe: dict[str, Any], training: TrainingSpec, data: Any) -> ModelLoop:
    """Set up one model's loop on ``data`` (a ``regsearch.worker.train.DeviceData``): checks the
    recipe's input shape against the data and the batch size against batch normalization."""
    device = data.device
    torch.manual_seed(training.seed)  # weights and dropout masks; batch order has its own generator
    model = build_model(recipe).to(device)
    shape = tuple(int(d) for d in recipe["input_shape"])
    check_input_shape(shape, data.sample_shape)
    check_bn_batch(model, training.batch_size)
    # views, not copies: the same device tensors serve every trial of the process
    return ModelLoop(
        model=model, shape=shape,
        x_train=data.x_train.reshape(-1, *shape), y_train=data.y_train,
        x_sample=data.x_train_sample.reshape(-1, *shape), y_sample=data.y_train_sample,
        x_val=data.x_val.reshape(-1, *shape), y_val=data.y_val,
        autocast=autocast_for(device), optimizer=make_optimizer(model, training),
        generator=torch.Generator(device=device).manual_seed(training.seed),
        starts=batch_starts(len(data.y_train), training.batch_size), training=training,
    )


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: Autocast) -> torch.Tensor:
    """``[summed loss, correct count]`` on the device; the caller syncs once for all of them."""
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), EVAL_CHUNK):
        xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
        with autocast():
            logits = model(xb)
        loss += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(dim=1) == yb).sum()
    return torch.stack([loss, correct])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: Autocast) -> float:
    """``model``'s accuracy on ``x``, ``y`` (the test split), in eval mode, without gradients."""
    model.eval()
    with torch.inference_mode():
        correct = evaluate(model, x, y, autocast)[1].item()
    return correct / len(y)


def epoch_metrics(epoch: int, stats: Sequence[float], n_sample: int, n_val: int, seconds: float) -> EpochMetrics:
    """An epoch's metrics from its synced sums ``[train loss sum, sample loss, sample correct, val
    loss, val correct]``; :class:`NonFiniteLossError` when the training loss is not finite."""
    running, sample_loss, sample_correct, val_loss, val_correct = stats
    if not math.isfinite(running):
        raise NonFiniteLossError(epoch, running)
    return EpochMetrics(
        epoch=epoch,
        train_loss=sample_loss / n_sample,
        train_acc=sample_correct / n_sample,
        val_loss=val_loss / n_val,
        val_acc=val_correct / n_val,
        seconds=seconds,
    )


def snapshot_state(state: dict[str, torch.Tensor], into: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """A copy of ``state`` (the best weights so far), written into ``into``'s storage when given."""
    if into is None:
        return {k: v.detach().clone() for k, v in state.items()}
    with torch.no_grad():
        # one call for every tensor (a C++ loop), not one Python-level copy_ per tensor
        torch._foreach_copy_([into[key] for key in state], list(state.values()))
    return into


OnEpoch = Callable[[EpochMetrics], "bool | None"]  # an epoch seen; True: stop now


@dataclass
class TrialRecorder:
    """One trial's record while a loop trains it: its epochs, best weights and test metrics.

    ``on_epoch`` (the worker's ``EpochReporter``, the CLI's printer) sees every reported epoch;
    its True means stop now (pruned, cancelled, lease lost, shutting down).
    """

    device: str
    on_epoch: OnEpoch | None = None
    task: str = "classification"  # the job's task: which summary (regsearch.domain.metrics.summarize)
    epochs: list[EpochMetrics] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0  # the epoch whose weights best_state holds
    best_rank: tuple[float, float] = (math.inf, math.inf)  # the built-in loops' order (epoch_rank)
    test_metrics: dict[str, float] = field(default_factory=dict)
    # after training, stored as they are in the trial's metrics (worker/variance_shift.py:
    # variance_shift, one per BN slot; the test accuracy before and after BN recalibration)
    measured: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False

    def report(self, metrics: EpochMetrics) -> bool:
        """Record an epoch; True: stop training now."""
        self.epochs.append(metrics)
        if self.on_epoch is not None and self.on_epoch(metrics):
            self.stopped_early = True
        return self.stopped_early

    def improves(self, metrics: EpochMetrics) -> bool:
        """Whether ``metrics`` is the best epoch so far by ``epoch_rank`` (remembered if so)."""
        rank = epoch_rank(metrics)
        if rank < self.best_rank:
            self.best_rank = rank
            return True
        return False

    def save_best(self, state: dict[str, torch.Tensor]) -> None:
        """Keep ``state`` (a copy, on the device) as the best weights: the last reported epoch's."""
        self.best_state = snapshot_state(state, self.best_state)
        self.best_epoch = self.epochs[-1].epoch if self.epochs else 0

    def test(self, **metrics: float) -> None:
        """The held-out metrics measured with the best weights (``test_acc``)."""
        self.test_metrics.update(metrics)

    def result(self) -> TrainResult:
        # the held-out metrics a loop measured (test_acc; a regression's test_rmse, test_r2, val_r2)
        summary = {**summarize(self.epochs, self.test_metrics.get("test_acc"), self.task), **self.test_metrics,
                   **self.measured}
        return TrainResult(self.epochs, summary, stopped_early=self.stopped_early, device=self.device,
                           best_state=self.best_state)
