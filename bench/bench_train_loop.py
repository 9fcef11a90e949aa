"""Seconds per epoch of ``regsearch.worker.train.train_trial`` vs a minimal hand-written loop, side by side.

Both train the same 40-256-256-256-10 MLP (bn-act-drop, dropout 0.3, momentum 0.1, adam, batch
128) on mnist1d with randperm batching and evaluate the same fixed train sample and the validation
split after every epoch. Runs are interleaved (and alternate which goes first) so drift in the
machine's speed hits both; the figure per run is its whole wall time (build, epochs, final test
evaluation) divided by its epochs.

    .venv/bin/python bench/bench_train_loop.py [--epochs 5] [--repeats 11] [--device cpu]
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
import torch.nn.functional as F
from torch import nn

from regsearch.config import get_settings
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import DatasetSpec, JobSpec, TrainingSpec
from regsearch.worker.datasets import input_shape_for, load_dataset
from regsearch.worker.train import DeviceData, select_device, to_device, train_trial

PARAMS = {"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1}


def minimal_loop(data: DeviceData, epochs: int, seed: int) -> float:
    """The plainest loop doing the same work; returns seconds per epoch (whole call)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    blocks: list[nn.Module] = []
    width_in = 40
    for _ in range(3):
        blocks += [
            nn.Linear(width_in, 256),
            nn.BatchNorm1d(256, momentum=0.1),
            nn.ReLU(),
            nn.Dropout(0.3),
        ]
        width_in = 256
    model = nn.Sequential(*blocks, nn.Linear(256, 10)).to(data.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator(device=data.device).manual_seed(seed)
    x, y = data.x_train.reshape(-1, 40), data.y_train
    xs, ys = data.x_train_sample.reshape(-1, 40), data.y_train_sample
    xv, yv = data.x_val.reshape(-1, 40), data.y_val
    n = len(y)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator, device=data.device)
        for start in range(0, n, 128):
            index = order[start : start + 128]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            for xe, ye in ((xs, ys), (xv, yv)):
                logits = model(xe)
                F.cross_entropy(logits, ye).item()
                (logits.argmax(1) == ye).float().mean().item()
    with torch.inference_mode():
        (model(data.x_test.reshape(-1, 40)).argmax(1) == data.y_test).float().mean().item()
    return (time.perf_counter() - started) / epochs


def service_loop(recipe: dict, training: TrainingSpec, data: DeviceData) -> float:
    started = time.perf_counter()
    train_trial(recipe, training, data)
    return (time.perf_counter() - started) / training.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: REGSEARCH_DATA_DIR")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = select_device(args.device)
    data_dir = args.data_dir or get_settings().data_dir
    spec = JobSpec(
        name="bench",
        dataset=DatasetSpec(name="mnist1d"),
        model={"family": "mlp", "hidden": [256, 256, 256]},
    )
    splits = load_dataset(spec.dataset, data_dir)
    data = to_device(splits, device)
    recipe = make_recipe(spec, PARAMS, input_shape_for(splits, "mlp"), splits.n_classes)
    training = TrainingSpec(epochs=args.epochs, batch_size=128, lr=1e-3, optimizer="adam", seed=0)
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"train={len(splits.y_train)} val={len(splits.y_val)} "
        f"epochs={args.epochs} repeats={args.repeats}"
    )

    service_loop(recipe, training.model_copy(update={"epochs": 1}), data)  # warm-up, not timed
    minimal_loop(data, 1, 0)
    service: list[float] = []
    minimal: list[float] = []
    for repeat in range(args.repeats):
        runs = [
            ("service", lambda: service.append(service_loop(recipe, training, data))),
            ("minimal", lambda: minimal.append(minimal_loop(data, args.epochs, 0))),
        ]
        for _, run in runs if repeat % 2 == 0 else reversed(runs):
            run()
        print(
            f"repeat {repeat + 1}: train_trial {service[-1] * 1e3:.1f} ms/epoch, "
            f"minimal {minimal[-1] * 1e3:.1f} ms/epoch"
        )
    s, m = statistics.median(service), statistics.median(minimal)
    # the fastest run of each is the least disturbed by other load on a shared machine
    print(
        f"best seconds/epoch:   train_trial={min(service):.4f} minimal={min(minimal):.4f} "
        f"ratio={min(service) / min(minimal):.3f}"
    )
    print(
        f"median seconds/epoch: train_trial={s:.4f} minimal={m:.4f} "
        f"ratio={s / m:.3f} (goal <= 1.10)"
    )


if __name__ == "__main__":
    main()
