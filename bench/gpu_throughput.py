"""Trials per hour on one GPU with K trial processes sharing it (K = 1, 2, 4, 8).

What ``regsearch worker --device cuda --concurrency K`` does: K processes, each training whole
trials of the mnist1d MLP (40-256-256-256-10) on the same GPU. Skips cleanly without CUDA.

    .venv/bin/python bench/gpu_throughput.py [--seconds 60] [--epochs 20] [--k 1 2 4 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPEC: dict[str, Any] = {
    "name": "gpu-throughput",
    "dataset": {"name": "mnist1d"},
    "model": {"family": "mlp", "hidden": [256, 256, 256]},
    "training": {"epochs": 20, "batch_size": 128, "lr": 0.002},
}
PARAMS = [
    {"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1},
    {"placement": "act-bn-drop", "dropout": 0.2, "bn_momentum": 0.05},
    {"placement": "bn-act", "bn_momentum": 0.1},
    {"placement": "act-drop", "dropout": 0.4},
    {"placement": "act"},
]


def _trial_process(spec_doc: dict[str, Any], data_dir: str, ready: Any, start: Any, stop_at: Any, out: Any) -> None:
    import torch

    from regsearch.domain.space import make_recipe
    from regsearch.domain.spec import JobSpec
    from regsearch.worker.datasets import input_shape_for, load_dataset
    from regsearch.worker.local import validate_params
    from regsearch.worker.train import to_device, train_trial

    spec = JobSpec.model_validate(spec_doc)
    splits = load_dataset(spec.dataset, Path(data_dir))
    data = to_device(splits, torch.device("cuda"))
    recipes = [make_recipe(spec, validate_params(spec, p), input_shape_for(splits, "mlp"), splits.n_classes) for p in PARAMS]
    train_trial(recipes[0], spec.training.model_copy(update={"epochs": 1}), data)  # CUDA context, kernels
    ready.put(True)
    start.wait()
    done = 0
    while time.monotonic() < stop_at.value:
        train_trial(recipes[done % len(recipes)], spec.training, data)
        done += 1
    out.put(done)


def trials_per_hour(k: int, seconds: float, epochs: int, data_dir: str) -> float:
    ctx = multiprocessing.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    stop_at = ctx.Value("d", 0.0)
    spec = dict(SPEC, training=dict(SPEC["training"], epochs=epochs))
    processes = [ctx.Process(target=_trial_process, args=(spec, data_dir, ready, start, stop_at, out)) for _ in range(k)]
    for p in processes:
        p.start()
    for _ in processes:
        ready.get(timeout=600)
    began = time.monotonic()
    stop_at.value = began + seconds
    start.set()
    total = sum(out.get(timeout=seconds + 600) for _ in processes)
    elapsed = time.monotonic() - began  # includes finishing the trials in progress at the deadline
    for p in processes:
        p.join()
    return total * 3600 / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu: skipped (no CUDA device here)")
        return 0
    print(f"gpu: {torch.cuda.get_device_name(0)}; mnist1d MLP 40-256-256-256-10, {args.epochs} epochs per trial")
    with tempfile.TemporaryDirectory() as tmp:
        from regsearch.domain.spec import JobSpec
        from regsearch.worker.datasets import load_dataset

        load_dataset(JobSpec.model_validate(SPEC).dataset, Path(tmp))  # generate once
        base = None
        for k in args.k:
            rate = trials_per_hour(k, args.seconds, args.epochs, tmp)
            base = base or rate
            print(f"| K={k} | {rate:,.0f} trials/hour | {rate / base:.2f}x K=1 |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
