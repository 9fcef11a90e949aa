"""``twobranch``: a conv branch and an MLP branch over the same input, concatenated, then a head.

A network the built-in families cannot express: the conv branch (Conv1d for ``[C, L]`` data,
Conv2d for ``[C, H, W]``; a flat ``[F]`` sample is read as ``[1, F]``) ends in global average
pooling; the MLP branch sees the flattened input; their features are concatenated and go through
the head's Linear layers. Slots, in order: each conv, then each MLP-branch Linear, then each
head Linear (so ``dropout_layers: last`` is the last head Linear).
"""

from __future__ import annotations

import math
from typing import Literal

import pydantic
import torch
from torch import nn

__all__ = ["TwoBranch"]


class _Net(nn.Module):
    def __init__(self, conv: nn.Module, mlp: nn.Module, head: nn.Module, input_shape: list[int]) -> None:
        super().__init__()
        self.conv = conv
        self.mlp = mlp
        self.head = head
        self.input_shape = list(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)
        return self.head(torch.cat([self.conv(x), self.mlp(x.flatten(1))], dim=1))


class TwoBranch:
    """A conv branch and an MLP branch, concatenated, then a Linear head."""

    slots_doc = "each conv of the conv branch, then each MLP-branch Linear, then each head Linear"

    class Knobs(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        channels: list[pydantic.PositiveInt] = pydantic.Field(default=[16, 16], min_length=1, max_length=8)
        kernel_size: int = pydantic.Field(default=3, ge=1, le=15)
        hidden: list[pydantic.PositiveInt] = pydantic.Field(default=[32], min_length=1, max_length=8)
        head: list[pydantic.PositiveInt] = pydantic.Field(default=[32], max_length=8)
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"] = "relu"

    def slots(self, knobs: Knobs, input_shape: list[int] | None) -> int:
        return len(knobs.channels) + len(knobs.hidden) + len(knobs.head)

    def input_shape(self, knobs: Knobs, sample_shape: list[int]) -> list[int]:
        shape = [int(d) for d in sample_shape]
        if len(shape) == 1:
            return [1, shape[0]]
        if len(shape) not in (2, 3):
            raise ValueError(f"{shape} must be [features], [channels, length] or [channels, height, width]")
        return shape

    def build(self, knobs: Knobs, input_shape: list[int], n_classes: int, slot) -> nn.Module:
        dims = len(input_shape) - 1  # 1: Conv1d, 2: Conv2d
        conv_cls = nn.Conv1d if dims == 1 else nn.Conv2d
        index = 0
        layers: list[nn.Module] = []
        width = input_shape[0]
        for channels in knobs.channels:
            layers += [conv_cls(width, channels, knobs.kernel_size, padding=knobs.kernel_size // 2),
                       slot(index, channels, dims)]
            width, index = channels, index + 1
        pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        conv = nn.Sequential(*layers, pool, nn.Flatten())

        layers, features = [], math.prod(input_shape)
        for hidden in knobs.hidden:
            layers += [nn.Linear(features, hidden), slot(index, hidden, 0)]
            features, index = hidden, index + 1
        mlp = nn.Sequential(*layers)

        layers, features = [], width + features
        for hidden in knobs.head:
            layers += [nn.Linear(features, hidden), slot(index, hidden, 0)]
            features, index = hidden, index + 1
        head = nn.Sequential(*layers, nn.Linear(features, n_classes))
        return _Net(conv, mlp, head, input_shape)
