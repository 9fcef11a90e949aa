"""The variance shift of each BN layer, measured after training, and its repair (pure PyTorch).

Li et al. (CVPR 2019, "Understanding the disharmony between dropout and batch normalization by
variance shift") call *variance shift* the ratio, per BN unit, of the variance its input has at
inference to the running variance BN learned in training: Var_eval / Var_running. Inverted
dropout with rate p scales the kept units by 1/(1-p), so in training the input of a BN right after
dropout has variance larger by about 1/(1-p) (for a zero-mean input); BN learns that larger
variance, and at inference (dropout off) the input is smaller: the ratio is about 1 - p. With no
dropout anywhere before a BN the ratio is 1 within sampling error. (In a deep network with dropout
after a BN, every later BN sees dropout through the preceding layer, so only the first is ~1.)

- :func:`variance_shift`: one ratio per BN module in module order (the slots' order), the mean
  over the module's channels of Var(input in eval mode over ``x``, per channel; over the batch and
  spatial positions) / ``running_var``.
- :func:`recalibrate_bn`: re-estimate every BN's running statistics with dropout off, on the
  training split (like ``torch.optim.swa_utils.update_bn``): statistics reset, cumulative averaging
  (``momentum=None``), BN modules in train mode and everything else, dropout included, in eval mode.
  The model ends in eval mode with its momenta restored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

CHUNK = 4096  # examples per forward pass: bounds memory on large splits


def bn_modules(model: nn.Module) -> list[_BatchNorm]:
    """The model's BN modules with running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
            and m.running_var is not None]


def variance_shift(model: nn.Module, x: torch.Tensor, *, chunk: int = CHUNK) -> list[float]:
    """Per BN module: mean over channels of Var_eval(input over ``x``) / running_var (see the module doc)."""
    modules = bn_modules(model)
    if not modules:
        return []
    sums: dict[int, list[Any]] = {}

    def hook(index: int) -> Any:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            value = inputs[0].detach().float()
            dims = [d for d in range(value.dim()) if d != 1]  # all but the channel dimension
            count = value.numel() // value.shape[1]
            total, squares = value.sum(dim=dims), (value * value).sum(dim=dims)
            if index in sums:
                sums[index][0] += count
                sums[index][1] += total
                sums[index][2] += squares
            else:
                sums[index] = [count, total, squares]
        return record

    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(modules)]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(x), chunk):
                model(x[start : start + chunk])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    ratios = []
    for index, module in enumerate(modules):
        count, total, squares = sums[index]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        running = module.running_var.detach().float().clamp_min(1e-12)
        ratios.append(float((var / running).mean()))
    return ratios


def recalibrate_bn(model: nn.Module, x: torch.Tensor, *, batch_size: int) -> None:
    """Re-estimate BN's running statistics over ``x`` with dropout off (see the module doc)."""
    modules = bn_modules(model)
    if not modules:
        return
    momenta = [m.momentum for m in modules]
    model.eval()  # dropout off
    for module in modules:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average over the batches
        module.train()
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = x[start : start + batch_size]
                if len(batch) > 1:  # BN in train mode needs more than one value per channel
                    model(batch)
    finally:
        for module, momentum in zip(modules, momenta):
            module.momentum = momentum
        model.eval()


def after_training(model: nn.Module, *, recalibrate: bool, x_val: torch.Tensor, x_train: torch.Tensor,
                   batch_size: int, test_accuracy: Any) -> dict[str, Any]:
    """What a trial stores after training its best weights: ``variance_shift`` (one ratio per BN
    slot; empty without BN) and, with ``recalibrate`` and BN present, ``test_acc_before_recalibration``
    and ``test_acc_after_recalibration`` (``test_accuracy()`` measures the model as it stands). The
    recalibration changes ``model`` in place: call it after the weights to keep were saved."""
    shift = variance_shift(model, x_val)
    if not shift:
        return {}
    found: dict[str, Any] = {"variance_shift": shift}
    if recalibrate:
        found["test_acc_before_recalibration"] = test_accuracy()
        recalibrate_bn(model, x_train, batch_size=batch_size)
        found["test_acc_after_recalibration"] = test_accuracy()
    return found
