"""The most packing can buy for one model on this CPU: an unpacked trial's wall time over the time
its matrix multiplications would take at the core's measured peak.

Packing K trials into one model removes per-operation overhead (Python, dispatch, small kernels)
but not arithmetic: a pack does K times the FLOPs of one trial. So however well it packs, a
member cannot train faster than its own FLOPs at the core's peak rate, and

    ceiling = unpacked seconds per trial / (its matmul FLOPs / peak FLOP/s)

bounds ``packed_speedup`` from above (it ignores the element-wise work BN, dropout and Adam do,
so the true bound is lower still). The FLOPs come from PyTorch's profiler on one unpacked trial;
the peak from the same shapes batched eight-wide (``baddbmm``), which is what a pack of eight
runs; the wall time from an unprofiled run, side by side.

    .venv/bin/python bench/packed_ceiling.py [--epochs 3] [--threads 1] [--hidden 256,256,256]
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
from regsearch.worker.train import select_device, to_device, train_trial

MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul")


def peak_flops(hidden: int, batch: int, k: int = 8, seconds: float = 1.0) -> float:
    """FLOP/s of a pack-of-k layer (k x batch x hidden @ k x hidden x hidden) on this core."""
    x, w, b = torch.randn(k, batch, hidden), torch.randn(k, hidden, hidden), torch.randn(k, 1, hidden)
    for _ in range(10):
        torch.baddbmm(b, x, w)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.baddbmm(b, x, w)
        calls += 1
    return calls * 2 * k * batch * hidden * hidden / (time.perf_counter() - started)


def matmul_flops(recipe: dict, training: TrainingSpec, data) -> float:
    """The FLOPs of one unpacked trial's matrix multiplications, as the profiler counts them."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
        train_trial(recipe, training, data)
    return float(sum(e.flops for e in prof.key_averages() if e.key in MATMUL_OPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (one per worker)")
    parser.add_argument("--hidden", default="256,256,256", help="the MLP's hidden widths")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: REGSEARCH_DATA_DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hidden = [int(w) for w in args.hidden.split(",")]
    spec = JobSpec(name="bench", dataset=DatasetSpec(name="mnist1d"), model={"family": "mlp", "hidden": hidden})
    splits = load_dataset(spec.dataset, args.data_dir or get_settings().data_dir)
    data = to_device(splits, select_device("cpu"))
    recipe = make_recipe(spec, {"placement": "bn-act-drop", "dropout": 0.2, "bn_momentum": 0.1},
                         input_shape_for(splits, "mlp"), splits.n_classes)
    training = TrainingSpec(epochs=args.epochs, batch_size=128, lr=1e-3, optimizer="adam")

    train_trial(recipe, training, data)  # warm-up
    walls = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        train_trial(recipe, training, data)
        walls.append(time.perf_counter() - started)
    wall = min(walls)  # the least disturbed run: the ceiling it gives is the lowest
    flops = matmul_flops(recipe, training, data)
    peak = peak_flops(max(hidden), training.batch_size)
    bound = flops / peak
    print(f"mlp {hidden} on mnist1d ({len(splits.y_train)} train), {args.epochs} epochs, "
          f"{torch.get_num_threads()} thread(s): unpacked {wall:.3f} s (min of {args.repeats}, "
          f"median {statistics.median(walls):.3f}); matmuls {flops / 1e9:.2f} GFLOP at the packed "
          f"peak {peak / 1e9:.0f} GFLOP/s = {bound:.3f} s")
    print(f"packed_speedup_ceiling={wall / bound:.2f} (matmuls alone; element-wise work lowers it)")


if __name__ == "__main__":
    main()
