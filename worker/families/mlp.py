"""``mlp``: hidden Linear layers, each followed by its slot, then the output Linear.

The module reads like the recipe (and is the one version 1 built, so its weights' names hold)::

    block1: Sequential(linear, bn, act, drop)   # the slot's ops in the trial's order
    ...
    head:   Linear(width -> n_classes)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from regsearch.domain.families import BUILTIN, MLPKnobs
from regsearch.worker.families.base import BuiltinFamily, with_layer


class MLP(BuiltinFamily):
    info = BUILTIN["mlp"]

    def build(self, knobs: MLPKnobs, input_shape: Sequence[int], n_classes: int, slot: Any) -> nn.Module:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        features = int(input_shape[0])
        for index, width in enumerate(knobs.hidden):
            layers[f"block{index + 1}"] = with_layer("linear", nn.Linear(features, width), slot(index, width, 0))
            features = width
        layers["head"] = nn.Linear(features, n_classes)
        return nn.Sequential(layers)
