"""``vgg``: stages of 3x3 convs with a max-pool of 2 after each, then a head of Linear layers.

Simonyan & Zisserman's layout at any size: ``channels: [32, 64, 128]`` are the stages' widths,
``convs_per_stage`` convs in each (padding 1, so only the pools shrink the input), ``head``
the hidden Linear widths of the classifier, then the output Linear. 1-d data ``[C, L]`` gets
Conv1d / MaxPool1d. Slots: every conv, stage by stage, then every head Linear: the head's slots
are the last ones, so with ``head: [512, 512]``, ``dropout_layers: last-2`` is the classic
dropout in the classifier only::

    stage1: Sequential(conv1: Sequential(conv, bn, act, drop), conv2: ..., pool: MaxPool2d(2))
    ...
    flatten
    fc1: Sequential(linear, bn, act, drop)      # BatchNorm1d in the head
    out: Linear(width -> n_classes)

Pooling follows a stage's last slot, whatever its order (``conv, bn, act, drop, pool``). A
layer directly followed by BN has no bias (BN removes it), else it has one. Conv weights are
He-initialized (``kaiming_normal_``, fan-out) as in torchvision's VGG.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from regsearch.domain.families import BUILTIN, VGGKnobs
from regsearch.worker.families.base import CONVS, BuiltinFamily, starts_with_bn, with_layer


class VGG(BuiltinFamily):
    info = BUILTIN["vgg"]

    def build(self, knobs: VGGKnobs, input_shape: Sequence[int], n_classes: int, slot: Any) -> nn.Module:
        shape = self.info.input_shape(knobs, input_shape)  # refuses inputs the pools would empty
        spatial = len(shape) - 1
        conv, pool = CONVS[spatial], (nn.MaxPool1d if spatial == 1 else nn.MaxPool2d)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        index, features, sizes = 0, int(shape[0]), [int(s) for s in shape[1:]]
        for stage, width in enumerate(knobs.channels, start=1):
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            for c in range(1, knobs.convs_per_stage + 1):
                made = slot(index, width, spatial)
                layer = conv(features, width, 3, padding=1, bias=not starts_with_bn(made))
                parts[f"conv{c}"] = with_layer("conv", layer, made)
                index, features = index + 1, width
            parts["pool"] = pool(2)
            sizes = [s // 2 for s in sizes]
            layers[f"stage{stage}"] = nn.Sequential(parts)
        layers["flatten"] = nn.Flatten()
        features *= math.prod(sizes)
        for fc, width in enumerate(knobs.head, start=1):
            made = slot(index, width, 0)
            layers[f"fc{fc}"] = with_layer("linear", nn.Linear(features, width, bias=not starts_with_bn(made)), made)
            index, features = index + 1, width
        layers["out"] = nn.Linear(features, n_classes)
        model = nn.Sequential(layers)
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        return model
