"""``cnn``: Conv layers (1d for sequences, 2d for images), each followed by its slot, then a Linear.

::

    block1: Sequential(conv, bn, act, drop)   # the slot's ops in the trial's order
    ...
    flatten, head: Linear(channels * positions -> n_classes)

No pooling and ``padding = kernel_size // 2`` keep the length/size (odd kernels), so the only
thing a placement changes is the order and presence of BN, activation and dropout. This is the
module version 1 built, so its weights' names hold.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn

from regsearch.domain.families import BUILTIN, CNNKnobs
from regsearch.worker.families.base import CONVS, BuiltinFamily, with_layer


class CNN(BuiltinFamily):
    info = BUILTIN["cnn"]

    def build(self, knobs: CNNKnobs, input_shape: Sequence[int], n_classes: int, slot: Any) -> nn.Module:
        spatial = len(input_shape) - 1
        conv, kernel = CONVS[spatial], knobs.kernel_size
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        features, sizes = int(input_shape[0]), [int(s) for s in input_shape[1:]]
        for index, width in enumerate(knobs.channels):
            layer = conv(features, width, kernel_size=kernel, padding=kernel // 2)
            layers[f"block{index + 1}"] = with_layer("conv", layer, slot(index, width, spatial))
            sizes = [s + 2 * (kernel // 2) - kernel + 1 for s in sizes]  # = s for odd kernels
            features = width
        layers["flatten"] = nn.Flatten()
        layers["head"] = nn.Linear(features * math.prod(sizes), n_classes)
        return nn.Sequential(layers)
