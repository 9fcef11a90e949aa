"""Seconds per epoch of ``train_trial`` on the built-in ``resnet`` family (depth 8 and 20) on
digits, against a minimal hand-written PyTorch loop training the same module, side by side.

The minimal loop builds the module with ``build_model(recipe)`` (so both train exactly the same
network), batches with ``randperm`` and evaluates the fixed train sample and the validation
split after every epoch, as ``train_trial`` does. Runs alternate which goes first.

    .venv/bin/python -m bench.resnet_loop [--epochs 3] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from regsearch.worker.datasets import input_shape_for, load_dataset
from regsearch.worker.models import build_model
from regsearch.worker.train import DeviceData, select_device, to_device

from bench.bench_train_loop import service_loop
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec, TrainingSpec

PARAMS = {"placement": "bn-act", "bn_momentum": 0.1}


def minimal_loop(recipe: dict, data: DeviceData, epochs: int, batch: int, seed: int = 0) -> float:
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(recipe).to(data.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator(device=data.device).manual_seed(seed)
    x, y, n = data.x_train, data.y_train, len(data.y_train)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator, device=data.device)
        for start in range(0, n, batch):
            index = order[start:start + batch]
            if len(index) < 2:
                continue
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            for xe, ye in ((data.x_train_sample, data.y_train_sample), (data.x_val, data.y_val)):
                logits = model(xe)
                F.cross_entropy(logits, ye).item()
                (logits.argmax(1) == ye).float().mean().item()
    with torch.inference_mode():
        (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    return (time.perf_counter() - started) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = select_device(args.device)
    with tempfile.TemporaryDirectory() as data_dir:
        spec0 = JobSpec.model_validate({"name": "bench", "dataset": {"name": "digits"}})
        splits = load_dataset(spec0.dataset, Path(data_dir))
    data = to_device(splits, device)
    training = TrainingSpec(epochs=args.epochs, batch_size=128, lr=1e-3, optimizer="adam", seed=0)
    print(f"device={device} threads={torch.get_num_threads()} train={len(splits.y_train)} "
          f"epochs={args.epochs} repeats={args.repeats}")
    for depth in (8, 20):
        spec = JobSpec.model_validate({"name": "bench", "dataset": {"name": "digits"},
                                       "model": {"family": "resnet", "depth": depth, "width": 16}})
        recipe = make_recipe(spec, PARAMS, input_shape_for(splits, spec.model), splits.n_classes)
        service_loop(recipe, training.model_copy(update={"epochs": 1}), data)  # warm-up
        service: list[float] = []
        minimal: list[float] = []
        for repeat in range(args.repeats):
            order = ("service", "minimal") if repeat % 2 == 0 else ("minimal", "service")
            for which in order:
                if which == "service":
                    service.append(service_loop(recipe, training, data))
                else:
                    minimal.append(minimal_loop(recipe, data, args.epochs, training.batch_size))
        s, m = statistics.median(service), statistics.median(minimal)
        print(f"resnet depth {depth}: train_trial {s:.3f} s/epoch, minimal loop {m:.3f} s/epoch, "
              f"ratio {s / m:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
