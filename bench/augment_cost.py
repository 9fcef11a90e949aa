"""The cost of augmentation per epoch: the same CNN trained with and without
``training.augment: {crop_padding: 4, hflip: true}``, side by side in one run.

The data is a synthetic image set shaped like CIFAR (3x32x32, 10 classes); runs alternate which
goes first so drift in the machine's speed hits both. Prints seconds per epoch of each and
their ratio.

    .venv/bin/python -m bench.augment_cost [--examples 4096] [--epochs 3] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from regsearch.domain.data import AugmentSpec
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec, TrainingSpec
from regsearch.worker.augment import make_augment
from regsearch.worker.datasets import Splits
from regsearch.worker.train import select_device, to_device, train_trial

PARAMS = {"placement": "bn-act-drop", "dropout": 0.2, "bn_momentum": 0.1}


def image_splits(n: int, seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    val = max(1, n // 8)
    return Splits(x[val:], y[val:], x[:val], y[:val], x[:val], y[:val], (3, 32, 32), 10, "cifar-shaped")


def seconds_per_epoch(data, recipe, training: TrainingSpec) -> float:
    result = train_trial(recipe, training, data)
    return statistics.fmean(e.seconds for e in result.epochs)


def transform_seconds_per_epoch(data, batch_size: int, repeats: int) -> float:
    """The augmentation alone over one epoch's batches: steadier than the difference of two
    noisy training runs on a shared machine."""
    augment = make_augment(AugmentSpec(crop_padding=4, hflip=True), (3, 32, 32), seed=0, device=data.device)
    assert augment is not None
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for begin in range(0, data.x_train.shape[0], batch_size):
            augment(data.x_train[begin:begin + batch_size])
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    spec = JobSpec.model_validate({"name": "augment-cost", "dataset": {"name": "digits"},
                                   "model": {"family": "cnn", "channels": [16, 32]}})
    data = to_device(image_splits(args.examples), select_device(args.device))
    recipe = make_recipe(spec, PARAMS, [3, 32, 32], 10)
    plain = TrainingSpec(epochs=args.epochs, batch_size=128)
    augmented = plain.model_copy(update={"augment": AugmentSpec(crop_padding=4, hflip=True)})
    seconds_per_epoch(data, recipe, plain)  # warm-up: allocator, kernels
    runs: dict[str, list[float]] = {"plain": [], "augmented": []}
    for repeat in range(args.repeats):
        order = [("plain", plain), ("augmented", augmented)]
        for name, training in order if repeat % 2 == 0 else order[::-1]:
            runs[name].append(seconds_per_epoch(data, recipe, training))
    plain_s, augmented_s = (statistics.median(runs[k]) for k in ("plain", "augmented"))
    transform_s = transform_seconds_per_epoch(data, plain.batch_size, args.repeats)
    print(f"augment: {args.examples} examples 3x32x32, cnn [16, 32], {args.epochs} epochs x {args.repeats} "
          f"on {data.device}: plain {plain_s:.3f} s/epoch, crop_padding=4 + hflip {augmented_s:.3f} s/epoch, "
          f"cost {augmented_s / plain_s - 1:+.1%} (ratio {augmented_s / plain_s:.3f}); the transform alone "
          f"{transform_s * 1000:.1f} ms/epoch ({transform_s / plain_s:.1%} of a plain epoch)")


if __name__ == "__main__":
    main()
