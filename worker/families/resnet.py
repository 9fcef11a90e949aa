"""``resnet``: the CIFAR-style residual network of He et al. 2016 (section 4.2), depth ``6n+2``.

A 3x3 stem conv (``width`` channels), three stages of ``n`` basic blocks with ``width``,
``2*width``, ``4*width`` channels (the first block of stages 2 and 3 has stride 2), global average
pooling and a Linear head: ``6n+2`` weighted layers. 1-d data ``[C, L]`` gets the same network
with Conv1d. Slots: the stem conv's, then both convs of every residual branch, block by block
(``depth - 1`` slots; ``last`` is the last block's second conv).

Where a slot meets the residual add. The reference block is
``conv-bn-relu-conv-bn, add, relu``: the branch's first slot is whole, and in its second (last)
slot **the add sits immediately before the activation**. The ops the trial orders before
``act`` run on the branch, ``act`` and everything after it run on the sum::

    bn-act        conv, bn          | add | act           (the reference block)
    bn-act-drop   conv, bn          | add | act, drop
    drop-bn-act   conv, drop, bn    | add | act
    bn-drop-act   conv, bn, drop    | add | act
    act-bn-drop   conv              | add | act, bn, drop
    act-drop-bn   conv              | add | act, drop, bn
    drop-act      conv, drop        | add | act
    act-drop      conv              | add | act, drop
    act           conv              | add | act

The shortcut is the identity where the shape is kept, else a projection (1x1 conv with the
block's stride, He et al.'s option B). The projection has a BN exactly when the branch reaches the
add through a BN (the slot orders ``bn`` before ``act``), with that BN's momentum, so both paths
arrive at the add normalized or neither does: ``bn-act`` is the reference projection (1x1 conv +
BN), and a trial without BN has no BN anywhere. A conv directly followed by BN has no bias (BN
removes it), else it has one. Conv weights are He-initialized (``kaiming_normal_``, fan-out) as in
the paper and torchvision.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from regsearch.domain.families import BUILTIN, ResNetKnobs
from regsearch.worker.families.base import (
    BATCH_NORMS,
    CONVS,
    BuiltinFamily,
    split_at_activation,
    starts_with_bn,
    with_layer,
)


class Add(nn.Module):
    """The residual add (a module, so the layer order shows where it sits)."""

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return x + skip


class BasicBlock(nn.Module):
    """``conv1, slot1, conv2, (slot2 before act), add(shortcut), (slot2 from act)``."""

    def __init__(
        self, conv: type[nn.Module], spatial: int, in_ch: int, out_ch: int, stride: int,
        first: nn.Sequential, last: nn.Sequential,
    ) -> None:  # fmt: skip
        super().__init__()
        before, after = split_at_activation(last)
        self.conv1 = conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=not starts_with_bn(first))
        self.slot1 = first
        self.conv2 = conv(out_ch, out_ch, 3, stride=1, padding=1, bias=not starts_with_bn(before))
        self.slot2 = before
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            bn = next((m for m in before.children() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)
            projection = conv(in_ch, out_ch, 1, stride=stride, bias=bn is None)
            self.shortcut = nn.Sequential(OrderedDict([("conv", projection)]))
            if bn is not None:
                self.shortcut.add_module("bn", BATCH_NORMS[spatial](out_ch, momentum=bn.momentum))
        self.add = Add()
        self.post = after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.slot2(self.conv2(self.slot1(self.conv1(x))))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.post(self.add(branch, skip))


class ResNet(BuiltinFamily):
    info = BUILTIN["resnet"]

    def build(self, knobs: ResNetKnobs, input_shape: Sequence[int], n_classes: int, slot: Any) -> nn.Module:
        spatial = len(input_shape) - 1
        conv, n = CONVS[spatial], (knobs.depth - 2) // 6
        stem_slot = slot(0, knobs.width, spatial)
        stem = conv(int(input_shape[0]), knobs.width, 3, padding=1, bias=not starts_with_bn(stem_slot))
        layers: OrderedDict[str, nn.Module] = OrderedDict(stem=with_layer("conv", stem, stem_slot))
        index, in_ch = 1, knobs.width
        for stage in range(3):
            out_ch = knobs.width * 2**stage
            blocks = []
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                first, last = slot(index, out_ch, spatial), slot(index + 1, out_ch, spatial)
                blocks.append(BasicBlock(conv, spatial, in_ch, out_ch, stride, first, last))
                index, in_ch = index + 2, out_ch
            layers[f"stage{stage + 1}"] = nn.Sequential(*blocks)
        layers["pool"] = (nn.AdaptiveAvgPool1d if spatial == 1 else nn.AdaptiveAvgPool2d)(1)
        layers["flatten"] = nn.Flatten()
        layers["head"] = nn.Linear(in_ch, n_classes)
        model = nn.Sequential(layers)
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        return model
