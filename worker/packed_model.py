"""The packed model: K same-structure modules as one (``packed_layers``), and back.

:func:`pack` walks the members' module trees together and replaces each layer by its packed form
under the same name, so the pack's state is the members' state stacked on a leading dim
(``PackedModel.member_state``) and :func:`unpack_member` gives back the plain module
``build_model`` builds. A tree packs when it is made only of ``nn.Sequential`` containers and
layers with a packed form (``PACKABLE``: exact types, since a subclass may change what
``forward`` does); a family with its own blocks (``resnet``'s residual block) does not, and
:func:`can_pack` says so instead of branching on family names.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from regsearch.domain.space import upgrade_recipe
from regsearch.worker.families.base import ACTIVATIONS
from regsearch.worker.models import build_model
from regsearch.worker.packed_layers import (
    PackedBatchNorm,
    PackedConv,
    PackedDropout,
    PackedFlatten,
    PackedLinear,
    PackError,
    PerChannel,
)

ELEMENTWISE = (*ACTIVATIONS.values(), nn.Identity)  # stateless, applied to the packed tensor as is
PER_CHANNEL = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# exact types: a subclass may change what forward does
PACKABLE = {
    nn.Sequential,
    nn.Linear,
    *CONVS,
    *BATCH_NORMS,
    nn.Dropout,
    nn.Flatten,
    *ELEMENTWISE,
    *PER_CHANNEL,
}


def unpackable(module: nn.Module) -> str | None:
    """Why ``module`` has no packed form (the first layer that has none), or None."""
    if type(module) not in PACKABLE:
        return f"{type(module).__name__} has no packed form"
    return next((why for child in module.children() if (why := unpackable(child))), None)


def pack(modules: Sequence[nn.Module], generators: Sequence[torch.Generator]) -> nn.Module:
    """One packed module for ``modules`` (one structure); member ``i`` uses ``generators[i]``."""
    first = modules[0]
    if any(type(m) is not type(first) for m in modules):
        raise PackError("the members' modules differ")
    if type(first) not in PACKABLE:
        raise PackError(f"{type(first).__name__} has no packed form")
    if isinstance(first, nn.Sequential):
        names = [name for name, _ in first.named_children()]
        if any([name for name, _ in m.named_children()] != names for m in modules):
            raise PackError("the members' layers differ")
        children = [dict(m.named_children()) for m in modules]
        return nn.Sequential(
            OrderedDict((n, pack([c[n] for c in children], generators)) for n in names)
        )
    if isinstance(first, nn.Linear):
        return PackedLinear.stack(modules)  # type: ignore[arg-type]
    if isinstance(first, CONVS):
        return PackedConv.stack(modules)
    if isinstance(first, nn.modules.batchnorm._BatchNorm):
        return PackedBatchNorm.stack(modules)  # type: ignore[arg-type]
    if isinstance(first, nn.Dropout):
        rates = [float(m.p) for m in modules]  # type: ignore[attr-defined]
        return PackedDropout(rates, generators, torch.device("cpu"))  # moved with the model
    if isinstance(first, nn.Flatten):
        return PackedFlatten(first)
    if type(first) in PER_CHANNEL:
        return PerChannel(first)
    return first  # elementwise


def select(module: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A copy of the packed ``module`` with only the members ``keep`` (indices), in that order."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(OrderedDict((n, select(c, keep)) for n, c in module.named_children()))
    if isinstance(module, (PackedLinear, PackedConv, PackedBatchNorm, PackedDropout)):
        return module.select(keep)
    return module  # stateless: the same module serves any number of members


STRUCTURE_KEYS = ("family", "knobs", "input_shape", "n_classes")


def _structure(recipe: dict[str, Any]) -> tuple[Any, ...]:
    recipe = upgrade_recipe(recipe)
    shared = json.dumps([recipe[k] for k in STRUCTURE_KEYS], sort_keys=True)
    return shared, tuple(tuple(s["order"]) for s in recipe["slots"])


def can_pack(recipes: Sequence[dict[str, Any]]) -> bool:
    """Whether ``recipes`` can train as one pack: one structure (family, knobs, shapes, each slot's
    ops, so placement and layer selection) and a module made only of layers with a packed form."""
    if not recipes:
        return False
    try:
        if len({_structure(r) for r in recipes}) != 1:
            return False
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = build_model(recipes[0])  # shapes only: nothing allocated, no RNG consumed
    except (ValueError, KeyError, TypeError):
        return False
    return unpackable(model) is None


class PackedModel(nn.Module):
    """K members of one structure: ``forward`` maps ``(K, B, *input_shape)`` to ``(K, B, C)``."""

    def __init__(self, net: nn.Module, recipes: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        self.net = net
        self.recipes = list(recipes)

    @classmethod
    def from_members(
        cls,
        models: Sequence[nn.Module],
        recipes: Sequence[dict[str, Any]],
        generators: Sequence[torch.Generator],
    ) -> PackedModel:
        """Stack ``models`` (built from ``recipes``); member ``i`` masks with ``generators[i]``."""
        device = next(models[0].parameters()).device
        return cls(pack(models, generators), recipes).to(device)

    @property
    def size(self) -> int:
        return len(self.recipes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s state under ``build_model``'s names (views into the pack)."""
        return {name: tensor[i] for name, tensor in self.net.state_dict().items()}

    def select(self, keep: Sequence[int]) -> PackedModel:
        """A new pack of only the members ``keep`` (positions), their state copied exactly."""
        index = torch.tensor(list(keep), dtype=torch.long)
        return PackedModel(select(self.net, index), [self.recipes[i] for i in keep])


def unpack_member(packed_model: PackedModel, i: int) -> nn.Module:
    """Member ``i`` as the plain module ``build_model(recipe_i)`` gives, with its trained state."""
    with torch.random.fork_rng(devices=[]):  # its fresh weights are overwritten: spare the RNG
        model = build_model(packed_model.recipes[i])
    device = next(packed_model.parameters()).device
    model.to(device).load_state_dict(packed_model.member_state(i))
    return model


def carry_optimizer(
    old: torch.optim.Optimizer,
    old_model: nn.Module,
    new: torch.optim.Optimizer,
    new_model: nn.Module,
    keep: torch.Tensor,
) -> torch.optim.Optimizer:
    """``new`` (over ``new_model``, selected from ``old_model``) with the kept members' state."""
    size = next(old_model.parameters()).shape[0]
    for p_old, p_new in zip(old_model.parameters(), new_model.parameters(), strict=True):
        state = old.state.get(p_old)
        if state:  # moments have the parameter's shape; Adam's step count is one shared scalar
            new.state[p_new] = {
                key: (
                    value[keep.to(value.device)]
                    if value.ndim and value.shape[0] == size
                    else value.clone()
                )
                if torch.is_tensor(value)
                else value
                for key, value in state.items()
            }
    return new
