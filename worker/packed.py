"""Packed training: trials of one structure trained as ONE model, each its own (pure PyTorch).

Trials whose recipes differ only in their slots' rates (dropout, BN momentum) build modules of the
same shapes; :func:`train_packed` stacks them into one packed model (``packed_model``,
``packed_layers``) and trains all members in the same ops: one batched matmul per Linear, one
grouped convolution per Conv, one optimizer over the stacked parameters (Adam/AdamW/SGD are
elementwise, so each member keeps its own moments; lr and weight decay are the spec's, shared; a
pack of several takes Adam's fused step). What stays per member:

- its weights' initialization (``build_model`` under its seed, as ``train_trial`` does),
- its batch order (its own ``randperm`` generator; the pack gathers a ``(K, B, ...)`` batch),
- its dropout masks (its own generator, on CPU continuing where its build left the global RNG,
  as ``train_trial``'s ``nn.Dropout`` does; in a pack of several on CPU drawn as uniforms, the
  same distribution at a third of the cost: ``packed_layers``), its BN momentum and running
  statistics,
- its epochs, best-validation weights, test accuracy and ending, and the variance shift of its
  BN slots measured on its own module after training (and its repair with ``bn_recalibrate``).

So a member trains as it would alone: on CPU a pack of one takes the packed path (these layers,
this loop) and reproduces ``train_trial`` bit for bit; in a larger pack a member without
dropout matches its unpacked run within float tolerance (the fused Adam step and a grouped
convolution round differently), and one with dropout matches it in distribution (its masks are
its own stream's, drawn another way on CPU; on CUDA they are ``bernoulli_``'s).

``on_epoch(member, metrics)`` returning True stops that member: it leaves the pack, which is
rebuilt without it (its compute is reclaimed: the remaining members' parameters, BN state and
optimizer state are carried over exactly), and the others go on. A member whose loss becomes
non-finite leaves the same way; its entry in the results is the :class:`NonFiniteLossError`
``train_trial`` would have raised.

``on_result(member, result)`` is called with each member's result as soon as it is known: a
member that leaves early gets it at the epoch it leaves, so its trial can end (its row written,
its slot freed for the job's next trial) while the rest of the pack trains on.

``EpochMetrics.seconds`` is a member's share of the pack's epoch (wall time / members in the pack).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import TrainingSpec
from regsearch.worker.augment import Augment, make_augment
from regsearch.worker.loop import (
    EVAL_CHUNK,
    Autocast,
    NonFiniteLossError,
    TrainResult,
    TrialRecorder,
    accuracy,
    autocast_for,
    batch_starts,
    check_bn_batch,
    check_input_shape,
    epoch_metrics,
    make_optimizer,
)
from regsearch.worker.models import build_model
from regsearch.worker.packed_model import PackedModel, can_pack, carry_optimizer, unpack_member
from regsearch.worker.train import DeviceData
from regsearch.worker.variance_shift import after_training

PACKED_EVAL_CHUNK = 256  # examples per member per forward pass when a pack evaluates on CPU

__all__ = ["PackedModel", "can_pack", "train_packed", "unpack_member"]


@dataclass
class _Member:
    """One member's own streams and record while it is in the pack."""

    index: int  # its position in train_packed's arguments
    batches: torch.Generator
    augment: Augment | None
    recorder: TrialRecorder  # its epochs, best weights and test accuracy (regsearch.worker.loop)


def _dropout_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if device.type == "cpu":
        generator.set_state(torch.get_rng_state())  # where train_trial's nn.Dropout would start
    else:
        generator.manual_seed(seed)
    return generator


def _evaluate_packed(model: PackedModel, x: torch.Tensor, y: torch.Tensor, autocast: Autocast) -> torch.Tensor:
    """``(K, 2)``: each member's summed loss and correct count, as ``loop.evaluate``'s."""
    k = model.size
    loss = torch.zeros(k, device=x.device)
    correct = torch.zeros(k, device=x.device)
    # a pack of one reduces as loop.evaluate does (bit-identical); a larger pack evaluates in
    # chunks whose activations stay in the CPU's cache (K times as many as one model's)
    chunk = EVAL_CHUNK if k == 1 or x.device.type != "cpu" else PACKED_EVAL_CHUNK
    for start in range(0, len(x), chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        with autocast():
            logits = model(xb.unsqueeze(0).expand(k, *xb.shape))
        if k == 1:  # the unpacked reduction, so the sums match it exactly
            loss += F.cross_entropy(logits[0].float(), yb, reduction="sum")
        else:
            losses = F.cross_entropy(logits.float().flatten(0, 1), yb.repeat(k), reduction="none")
            loss += losses.view(k, -1).sum(dim=1)
        correct += (logits.argmax(dim=2) == yb).sum(dim=1)
    return torch.stack([loss, correct], dim=1)


def _finish(
    member: _Member, model: PackedModel, position: int, data: DeviceData, training: TrainingSpec, autocast: Autocast
) -> TrainResult:
    """The member's result: test accuracy of its best weights, measured on the plain module, and
    (as ``train_trial`` measures them) the variance shift of its own BN slots and, with
    ``training.bn_recalibrate``, their repair (worker/variance_shift.py)."""
    recorder = member.recorder
    assert recorder.best_state is not None  # it ran at least one epoch
    plain = unpack_member(model, position)
    plain.load_state_dict(recorder.best_state)
    shape = model.recipes[position]["input_shape"]
    x_test = data.x_test.reshape(-1, *shape)
    recorder.test(test_acc=accuracy(plain, x_test, data.y_test, autocast))
    # after the best weights were kept (best_state is a copy): the recalibration changes `plain` only
    recorder.measured.update(after_training(
        plain, recalibrate=training.bn_recalibrate, x_val=data.x_val.reshape(-1, *shape),
        x_train=data.x_train.reshape(-1, *shape), batch_size=training.batch_size,
        test_accuracy=lambda: accuracy(plain, x_test, data.y_test, autocast)))
    return recorder.result()


def _batch(
    data: DeviceData,
    x_train: torch.Tensor,
    index: torch.Tensor,
    shape: tuple[int, ...],
    members: Sequence[_Member],
) -> torch.Tensor:
    """The ``(K, B, *shape)`` batch for ``index`` ``(K, B)``, laid out ``(B, K, ...)``."""
    if all(m.augment is None for m in members):
        return x_train[index.T].transpose(0, 1)
    parts = [
        x_train[row] if m.augment is None else m.augment(data.x_train[row]).reshape(-1, *shape)
        for m, row in zip(members, index, strict=True)
    ]
    return torch.stack(parts, dim=1).transpose(0, 1)


def train_packed(
    recipes: Sequence[dict[str, Any]],
    training: TrainingSpec,
    data: DeviceData,
    seeds: Sequence[int],
    on_epoch: Callable[[int, EpochMetrics], bool | None] | None = None,
    on_result: Callable[[int, TrainResult | NonFiniteLossError], None] | None = None,
) -> list[TrainResult | NonFiniteLossError]:
    """Train ``recipes`` as one pack, member ``i`` with training seed ``seeds[i]``; one result each.

    ``on_epoch(i, metrics)`` returning True stops member ``i`` after that epoch;
    ``on_result(i, result)`` receives member ``i``'s result the moment it is known.
    """
    if len(seeds) != len(recipes):
        raise ValueError(f"seeds: {len(seeds)} given for {len(recipes)} recipes")
    if not can_pack(recipes):
        raise ValueError(
            "recipes: these trials cannot train as one pack (see regsearch.worker.packed.can_pack)"
        )
    device = data.device
    shape = tuple(int(d) for d in recipes[0]["input_shape"])
    check_input_shape(shape, data.sample_shape)
    models, generators = [], []
    for recipe, seed in zip(recipes, seeds, strict=True):
        torch.manual_seed(seed)  # weights as train_trial draws them; its masks continue from here
        models.append(build_model(recipe).to(device))
        generators.append(_dropout_generator(seed, device))
    check_bn_batch(models[0], training.batch_size)
    model = PackedModel.from_members(models, recipes, generators)
    del models
    autocast = autocast_for(device)
    # A pack of several takes Adam's fused step: the single-tensor loop makes ~10 passes over
    # parameter-sized tensors, and a pack's K times larger ones fall out of the CPU's cache. It
    # rounds the last bit differently, so a pack of one keeps train_trial's loop (bit-identical).
    fused = True if len(recipes) > 1 else None

    def new_optimizer(packed: nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(packed, training, member_dims=1, fused=fused)

    optimizer = new_optimizer(model)
    active = [
        _Member(
            i,
            torch.Generator(device=device).manual_seed(seed),
            make_augment(training.augment, tuple(data.sample_shape), seed, device),
            TrialRecorder(str(device), None if on_epoch is None else functools.partial(on_epoch, i)),
        )
        for i, seed in enumerate(seeds)
    ]
    results: list[TrainResult | NonFiniteLossError | None] = [None] * len(recipes)

    def deliver(index: int, result: TrainResult | NonFiniteLossError) -> None:
        results[index] = result
        if on_result is not None:
            on_result(index, result)

    x_train, y_train = data.x_train.reshape(-1, *shape), data.y_train
    x_sample, y_sample = data.x_train_sample.reshape(-1, *shape), data.y_train_sample
    x_val, y_val = data.x_val.reshape(-1, *shape), data.y_val
    n, batch = len(y_train), training.batch_size
    starts = batch_starts(n, batch)
    for epoch in range(1, training.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.stack([torch.randperm(n, generator=m.batches, device=device) for m in active])
        loss_sum = torch.zeros(len(active), device=device)
        for start in starts:
            index = order[:, start : start + batch]
            inputs = _batch(data, x_train, index, shape, active)
            with autocast():
                logits = model(inputs)
                losses = F.cross_entropy(
                    logits.flatten(0, 1), y_train[index].flatten(), reduction="none"
                )
                losses = losses.view(len(active), -1).mean(dim=1)  # each member's mean batch loss
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # members share no parameter: each gets its own loss's gradient
            optimizer.step()
            loss_sum += losses.detach()

        model.eval()
        with torch.inference_mode():
            sample = _evaluate_packed(model, x_sample, y_sample, autocast)
            val = _evaluate_packed(model, x_val, y_val, autocast)
            # the epoch's one sync
            stats = torch.cat([loss_sum.unsqueeze(1), sample, val], dim=1).tolist()
        seconds = (time.perf_counter() - started) / len(active)
        leaving: list[int] = []
        for position, (member, row) in enumerate(zip(active, stats, strict=True)):
            try:
                metrics = epoch_metrics(epoch, row, len(y_sample), len(y_val), seconds)
            except NonFiniteLossError as exc:  # this member leaves with the error a lone trial raises
                deliver(member.index, exc)
                leaving.append(position)
                continue
            stop = member.recorder.report(metrics)
            if member.recorder.improves(metrics):
                member.recorder.save_best(model.member_state(position))
            if stop:
                leaving.append(position)
        for position in leaving:
            if results[active[position].index] is None:
                deliver(active[position].index, _finish(active[position], model, position, data, training, autocast))
        if leaving:
            keep = [p for p in range(len(active)) if p not in leaving]
            if not keep:
                active = []
                break
            smaller = model.select(keep)
            optimizer = carry_optimizer(
                optimizer, model, new_optimizer(smaller), smaller, torch.tensor(keep)
            )
            model, active = smaller, [active[p] for p in keep]

    for position, member in enumerate(active):
        deliver(member.index, _finish(member, model, position, data, training, autocast))
    assert all(r is not None for r in results)  # every member ended one way or another
    return results  # type: ignore[return-value]
