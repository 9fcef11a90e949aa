"""What every family builder shares: the slot factory, activations, and the built-in base class.

A *slot* is what follows one hidden Linear/Conv layer: the trial's BN / activation / dropout in
its order. ``build(knobs, input_shape, n_classes, slot)`` asks for each slot with
``slot(index, features, spatial_dims)`` and gets an ``nn.Sequential`` whose children are named
``bn``, ``act``, ``drop`` in the trial's order (BN and dropout only where the trial places them
in that slot). A family that puts something between a slot's ops (a residual add) splits the
slot with :func:`split_at_activation`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from regsearch.domain.families import FamilyInfo

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}
# BatchNorm for the tensor after a Linear (spatial_dims 0: N x C), a Conv1d (N x C x L), ...
BATCH_NORMS: dict[int, type[nn.Module]] = {
    0: nn.BatchNorm1d,
    1: nn.BatchNorm1d,
    2: nn.BatchNorm2d,
    3: nn.BatchNorm3d,
}
CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class SlotFactory:
    """The ``slot`` callable a family's ``build`` receives, for one recipe's slots.

    It records which slots were built, so :meth:`check_complete` can tell a family whose
    ``slots()`` count disagrees with what its ``build`` asked for.
    """

    def __init__(self, family: str, slots: Sequence[dict[str, Any]], activation: str) -> None:
        self.family = family
        self.slots = list(slots)
        self.activation = ACTIVATIONS[activation]
        self.built: dict[int, tuple[int, int]] = {}

    def __call__(self, index: int, features: int, spatial_dims: int) -> nn.Sequential:
        n = len(self.slots)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
            raise ValueError(
                f"family {self.family!r} asked for slot {index!r}, but its slots() says {n} "
                f"(indices 0..{n - 1})"
            )
        if index in self.built:
            raise ValueError(f"family {self.family!r} asked for slot {index} twice")
        if not isinstance(features, int) or isinstance(features, bool) or features < 1:
            raise ValueError(f"family {self.family!r}: slot {index} got features={features!r}")
        if spatial_dims not in BATCH_NORMS:
            raise ValueError(
                f"family {self.family!r}: slot {index} got spatial_dims={spatial_dims!r} "
                "(0 after a Linear, 1 after a Conv1d, 2 after a Conv2d, 3 after a Conv3d)"
            )
        self.built[index] = (features, spatial_dims)
        spec = self.slots[index]
        parts: OrderedDict[str, nn.Module] = OrderedDict()
        for token in spec["order"]:
            if token == "bn":
                parts["bn"] = BATCH_NORMS[spatial_dims](features, momentum=float(spec["bn_momentum"]))
            elif token == "act":
                parts["act"] = self.activation()
            else:
                parts["drop"] = nn.Dropout(float(spec["dropout"]))
        return nn.Sequential(parts)

    def check_complete(self) -> None:
        missing = [i for i in range(len(self.slots)) if i not in self.built]
        if missing:
            raise ValueError(
                f"family {self.family!r}: its slots() says {len(self.slots)} slots but its build "
                f"used {len(self.built)} (never asked for slot {missing[0]})"
            )


def split_at_activation(slot: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """The slot's ops before its activation, and the activation with everything after it."""
    names = [name for name, _ in slot.named_children()]
    cut = names.index("act")
    children = list(slot.named_children())
    return nn.Sequential(OrderedDict(children[:cut])), nn.Sequential(OrderedDict(children[cut:]))


def starts_with_bn(slot: nn.Sequential) -> bool:
    """Whether BN directly follows the layer (which then needs no bias: BN removes it)."""
    first = next(iter(slot.children()), None)
    return isinstance(first, nn.modules.batchnorm._BatchNorm)


def with_layer(name: str, layer: nn.Module, slot: nn.Sequential) -> nn.Sequential:
    """``Sequential(name=layer, bn=..., act=..., drop=...)``: a layer and its slot, flat."""
    return nn.Sequential(OrderedDict([(name, layer), *slot.named_children()]))


class BuiltinFamily:
    """A built-in family: the plugin protocol (``Knobs``, ``slots``, ``build``) over its info."""

    info: FamilyInfo

    @property
    def Knobs(self) -> type[Any]:  # the protocol's name (docs/interface.md)
        return self.info.knobs

    def slots(self, knobs: Any, input_shape: Sequence[int] | None) -> int:
        return int(self.info.slots(knobs, input_shape))

    def build(self, knobs: Any, input_shape: Sequence[int], n_classes: int, slot: Any) -> nn.Module:
        raise NotImplementedError
