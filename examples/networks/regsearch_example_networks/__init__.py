"""Plain PyTorch networks, unmodified, for ``model: {family: auto, network: NAME}``.

Each is ``make(input_shape, n_classes) -> nn.Module`` and is registered in ``pyproject.toml``
under the entry-point group ``regsearch.networks``. ``broken_make``, ``untraceable`` and
``no_slots`` are there to show (and test) the errors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def vgg_seq(input_shape, n_classes):
    """A VGG-style nn.Sequential: conv-bn-relu twice, pool, then a Linear-relu-dropout head."""
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * (input_shape[1] // 2) * (input_shape[2] // 2), 32), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(32, n_classes),
    )


class Block(nn.Module):
    """A basic residual block written the usual way: F.relu and an add."""

    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, in_ch, n_classes, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(Block(width, width, 1))
        self.layer2 = nn.Sequential(Block(width, 2 * width, 2))
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def resnet_small(input_shape, n_classes):
    """A ResNet-style module: F.relu / torch.relu, residual adds, a projection shortcut."""
    return SmallResNet(input_shape[0], n_classes)


def torchvision_resnet18(input_shape, n_classes):
    """torchvision's resnet18 (needs torchvision installed)."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=n_classes)
    if input_shape[0] != 3:
        model.conv1 = nn.Conv2d(input_shape[0], 64, 7, 2, 3, bias=False)
    return model


def broken_make(input_shape, n_classes):
    raise RuntimeError("this network is broken on purpose")


class Untraceable(nn.Module):
    def __init__(self, n_in, n_classes):
        super().__init__()
        self.fc1 = nn.Linear(n_in, 16)
        self.gate = Gate()
        self.fc2 = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.fc2(self.gate(F.relu(self.fc1(x.flatten(1)))))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return x
        return -x


def untraceable(input_shape, n_classes):
    n = 1
    for d in input_shape:
        n *= d
    return Untraceable(n, n_classes)


def no_slots(input_shape, n_classes):
    n = 1
    for d in input_shape:
        n *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(n, n_classes))
