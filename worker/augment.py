"""Augmentation of image training batches on the device: random crops after padding, flips.

Applied per batch to the batch's tensor (N, C, H, W) where it already lives, with a generator of
its own seeded by the trial's seed, so a trial's augmentation is reproducible and independent of
its batch order and dropout masks; no DataLoader, no per-image Python loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from regsearch.domain.data import AugmentSpec
from regsearch.worker.datafiles import DatasetError

AUGMENT_SEED_OFFSET = 7919  # keeps the augmentation stream apart from the batch-order stream
Augment = Callable[[torch.Tensor], torch.Tensor]


def make_augment(spec: AugmentSpec | None, sample_shape: tuple[int, ...], seed: int,
                 device: torch.device) -> Augment | None:
    """The batch transform ``spec`` asks for, or None when it asks for nothing."""
    if spec is None or not spec.active:
        return None
    if len(sample_shape) != 3:
        raise DatasetError(f"training.augment: applies to images (C, H, W); this dataset's examples "
                           f"are shaped {list(sample_shape)}")
    generator = torch.Generator(device=device).manual_seed(seed + AUGMENT_SEED_OFFSET)
    pad, flip = spec.crop_padding, spec.hflip
    _, height, width = sample_shape
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)

    def augment(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if pad:
            padded = F.pad(x, (pad, pad, pad, pad))
            dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=device)
            dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=device)
            r = (dy + rows)[:, :, None]  # N, H, 1
            c = (dx + cols)[:, None, :]  # N, 1, W
            batch = torch.arange(n, device=device)[:, None, None]
            # advanced indices around a slice: the result is (N, H, W, C); contiguous again, since a
            # channels-last batch sends the convolutions down a slower path on the CPU (+14% an epoch)
            x = padded[batch, :, r, c].permute(0, 3, 1, 2).contiguous()
        if flip:
            mask = torch.rand(n, generator=generator, device=device) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        return x

    return augment
