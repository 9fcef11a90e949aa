"""Does the placement matter? ``bn-act-drop`` vs plain ``act`` on mnist1d, several seeds.

The 40-256-256-256-10 MLP trains for 30 epochs (adam, lr 1e-3, batch 128) with each placement and
each seed; the split is the same for all (split_seed 0), only the training seed changes. Test
accuracy is measured once per trial with the best-validation weights (regsearch.domain.metrics).

    .venv/bin/python bench/placement_check.py [--epochs 30] [--seeds 0 1 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

try:
    import regsearch  # noqa: F401
except ImportError:  # run from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from regsearch.config import get_settings
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import DatasetSpec, JobSpec, TrainingSpec
from regsearch.worker.datasets import input_shape_for, load_dataset
from regsearch.worker.train import select_device, to_device, train_trial

CONFIGS: dict[str, dict[str, Any]] = {
    "bn-act-drop": {"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1},
    "act": {"placement": "act"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: REGSEARCH_DATA_DIR")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = select_device(args.device)
    spec = JobSpec(
        name="placement-check",
        dataset=DatasetSpec(name="mnist1d"),
        model={"family": "mlp", "hidden": [256, 256, 256]},
    )
    splits = load_dataset(spec.dataset, args.data_dir or get_settings().data_dir)
    data = to_device(splits, device)
    print(
        f"mnist1d train={len(splits.y_train)} val={len(splits.y_val)} test={len(splits.y_test)} "
        f"epochs={args.epochs} lr={args.lr} device={device} threads={torch.get_num_threads()}"
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    for seed in args.seeds:
        for name, params in CONFIGS.items():
            recipe = make_recipe(spec, params, input_shape_for(splits, "mlp"), splits.n_classes)
            training = TrainingSpec(
                epochs=args.epochs, batch_size=128, lr=args.lr, optimizer="adam", seed=seed
            )
            started = time.perf_counter()
            summary = train_trial(recipe, training, data).summary
            results[name].append(summary)
            print(
                f"seed {seed} {name:<12} test_acc={summary['test_acc']:.4f} "
                f"val_acc={summary['val_acc']:.4f} gap={summary['gap']:+.4f} "
                f"best_epoch={summary['best_epoch']:>2} ({time.perf_counter() - started:.1f}s)"
            )
    means = {name: statistics.mean(s["test_acc"] for s in runs) for name, runs in results.items()}
    for name, mean in means.items():
        spread = (
            statistics.stdev(s["test_acc"] for s in results[name])
            if len(results[name]) > 1
            else 0.0
        )
        print(f"mean test_acc {name:<12} {mean:.4f} (sd {spread:.4f})")
    winner = max(means, key=lambda n: means[n])
    print(
        f"placement_check: bn-act-drop - act = {means['bn-act-drop'] - means['act']:+.4f}; "
        f"winner {winner}"
    )


if __name__ == "__main__":
    main()
