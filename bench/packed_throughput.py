"""Trials per hour: packed training (K = 4, 8) over unpacked (one trial at a time), side by side.

Eight mnist1d configurations of one structure (40-256-256-256-10 MLP by default, bn-act-drop on
every slot), each with its own dropout rate, BN momentum and training seed, the same epochs. Each
repeat trains all eight three ways, in an order that rotates between repeats so drift in the
machine's speed hits every mode: one at a time with ``train_trial``, as two packs of four and as
one pack of eight (``train_packed``). A mode's figure is eight trials over its wall time (builds, epochs and
the final test evaluations included), as trials per hour; the speedups are ratios of medians
(and of the best repeats: on a shared machine the fastest run is the least disturbed).

    .venv/bin/python bench/packed_throughput.py [--epochs 5] [--repeats 3] [--threads 1]
        [--hidden 256,256,256] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

try:
    import regsearch  # noqa: F401
except ImportError:  # run from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from regsearch.config import get_settings
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import DatasetSpec, JobSpec, TrainingSpec
from regsearch.worker.datasets import input_shape_for, load_dataset
from regsearch.worker.packed import can_pack, train_packed
from regsearch.worker.train import DeviceData, select_device, to_device, train_trial

DROPOUT = [0.1, 0.2, 0.3, 0.4, 0.15, 0.25, 0.35, 0.05]
MOMENTUM = [0.1, 0.01, 0.05, 0.3, 0.2, 0.02, 0.5, 0.1]
SEEDS = list(range(8))


def one_at_a_time(recipes: list[dict], training: TrainingSpec, data: DeviceData) -> float:
    started = time.perf_counter()
    for recipe, seed in zip(recipes, SEEDS):
        train_trial(recipe, training.model_copy(update={"seed": seed}), data)
    return time.perf_counter() - started


def in_packs(k: int, recipes: list[dict], training: TrainingSpec, data: DeviceData) -> float:
    started = time.perf_counter()
    for first in range(0, len(recipes), k):
        train_packed(recipes[first : first + k], training, data, SEEDS[first : first + k])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (one per worker)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: REGSEARCH_DATA_DIR")
    parser.add_argument("--hidden", default="256,256,256", help="the MLP's hidden widths")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    device = select_device(args.device)
    hidden = [int(w) for w in args.hidden.split(",")]
    spec = JobSpec(
        name="bench", dataset=DatasetSpec(name="mnist1d"), model={"family": "mlp", "hidden": hidden}
    )
    splits = load_dataset(spec.dataset, args.data_dir or get_settings().data_dir)
    data = to_device(splits, device)
    shape = input_shape_for(splits, "mlp")
    recipes = [
        make_recipe(
            spec,
            {"placement": "bn-act-drop", "dropout": p, "bn_momentum": m},
            shape,
            splits.n_classes,
        )
        for p, m in zip(DROPOUT, MOMENTUM, strict=True)
    ]
    assert can_pack(recipes)
    training = TrainingSpec(epochs=args.epochs, batch_size=128, lr=1e-3, optimizer="adam")
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"hidden={hidden} train={len(splits.y_train)} epochs={args.epochs} "
        f"repeats={args.repeats} trials/mode={len(recipes)}"
    )

    warm = training.model_copy(update={"epochs": 1})
    one_at_a_time(recipes[:1], warm, data)  # warm-up, not timed
    in_packs(8, recipes, warm, data)
    modes = {
        "k1": lambda: one_at_a_time(recipes, training, data),
        "k4": lambda: in_packs(4, recipes, training, data),
        "k8": lambda: in_packs(8, recipes, training, data),
    }
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    names = list(modes)
    for repeat in range(args.repeats):
        for name in names[repeat % 3 :] + names[: repeat % 3]:
            seconds[name].append(modes[name]())
        print(
            f"repeat {repeat + 1}: "
            + " ".join(
                f"{name} {len(recipes) * 3600 / seconds[name][-1]:,.0f} trials/h" for name in names
            )
        )

    per_hour = {name: len(recipes) * 3600 / statistics.median(s) for name, s in seconds.items()}
    best = {name: len(recipes) * 3600 / min(s) for name, s in seconds.items()}
    print("median trials/hour: " + " ".join(f"{n}={v:,.0f}" for n, v in per_hour.items()))
    print(
        f"best-repeat speedups: k4={best['k4'] / best['k1']:.2f} k8={best['k8'] / best['k1']:.2f}"
    )
    print(
        f"packed_speedup_k4={per_hour['k4'] / per_hour['k1']:.2f} "
        f"packed_speedup_k8={per_hour['k8'] / per_hour['k1']:.2f} (goal >= 2.5)"
    )


if __name__ == "__main__":
    main()
