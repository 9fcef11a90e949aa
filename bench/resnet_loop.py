"""Seconds per epoch of ``train_trial`` on the built-in ``resnet`` family (depth 8 and 20) on
digits, against a minimal hand-written PyTorch loop training the same module, side by side.

The minimal loop builds the module with ``build_model(recipe)`` (so both train exactly the same
network, same batch size, same optimizer), batches with ``randperm``, evaluates the fixed train
sample and the validation split after every epoch and the test split once at the end, as
``train_trial`` does: the same forward and backward passes. It does not keep a best-epoch
snapshot (that is the trial's bookkeeping, part of what is measured against it).

Two measurements, both reported:

- ``whole``: whole runs (build, epochs, final test evaluation) interleaved, alternating which goes
  first; per run, wall time / epochs.
- ``lockstep``: both loops advance one epoch at a time, in turn (the minimal loop's epoch runs in
  ``train_trial``'s ``on_epoch`` callback and is subtracted from the trial's wall time), so load
  from other work on a shared machine, which drifts on a scale of seconds, hits both alike. This
  is the figure to trust on a busy machine; runs alternate which loop's epoch goes first.

The ratio is the median over runs of each run's train_trial / minimal ratio.

    .venv/bin/python -m bench.resnet_loop [--epochs 3] [--repeats 7] [--mode both] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.bench_train_loop import service_loop
from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec, TrainingSpec
from regsearch.worker.datasets import input_shape_for, load_dataset
from regsearch.worker.models import build_model
from regsearch.worker.train import DeviceData, select_device, to_device, train_trial

PARAMS = {"placement": "bn-act", "bn_momentum": 0.1}


class MinimalLoop:
    """The plainest loop doing the trial's forward/backward work, one epoch per ``epoch()`` call.

    ``seconds``: the wall time spent in it so far (build, epochs, final test evaluation).
    """

    def __init__(self, recipe: dict, data: DeviceData, batch: int, seed: int = 0) -> None:
        started = time.perf_counter()
        torch.manual_seed(seed)
        self.model = build_model(recipe).to(data.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.generator = torch.Generator(device=data.device).manual_seed(seed)
        self.data, self.batch = data, batch
        self.seconds = time.perf_counter() - started
        self.epochs = 0

    def epoch(self) -> None:
        started = time.perf_counter()
        self.epochs += 1
        model, data, batch = self.model, self.data, self.batch
        x, y, n = data.x_train, data.y_train, len(data.y_train)
        model.train()
        order = torch.randperm(n, generator=self.generator, device=data.device)
        for start in range(0, n, batch):
            index = order[start:start + batch]
            if len(index) < 2:
                continue
            loss = F.cross_entropy(model(x[index]), y[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        model.eval()
        with torch.inference_mode():
            for xe, ye in ((data.x_train_sample, data.y_train_sample), (data.x_val, data.y_val)):
                logits = model(xe)
                F.cross_entropy(logits, ye).item()
                (logits.argmax(1) == ye).float().mean().item()
        self.seconds += time.perf_counter() - started

    def finish(self) -> None:
        started = time.perf_counter()
        with torch.inference_mode():
            (self.model(self.data.x_test).argmax(1) == self.data.y_test).float().mean().item()
        self.seconds += time.perf_counter() - started


def minimal_loop(recipe: dict, data: DeviceData, epochs: int, batch: int, seed: int = 0) -> float:
    """A whole minimal run; seconds per epoch (build, epochs and test evaluation included)."""
    loop = MinimalLoop(recipe, data, batch, seed)
    for _ in range(epochs):
        loop.epoch()
    loop.finish()
    return loop.seconds / epochs


def lockstep(recipe: dict, training: TrainingSpec, data: DeviceData, minimal_first: bool) -> tuple[float, float]:
    """(train_trial, minimal) seconds per epoch, the two advancing one epoch at a time in turn."""
    loop = MinimalLoop(recipe, data, training.batch_size, training.seed)
    if minimal_first:
        loop.epoch()
    inside = 0.0  # time spent in the minimal loop's epochs, called from train_trial's callback

    def on_epoch(metrics: EpochMetrics) -> None:
        nonlocal inside
        if minimal_first and metrics.epoch == training.epochs:
            return  # its epochs ran one ahead: all done
        started = time.perf_counter()
        loop.epoch()
        inside += time.perf_counter() - started

    started = time.perf_counter()
    result = train_trial(recipe, training, data, on_epoch=on_epoch)
    service = time.perf_counter() - started - inside
    assert len(result.epochs) == loop.epochs == training.epochs
    loop.finish()
    return service / training.epochs, loop.seconds / training.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mode", choices=("lockstep", "whole", "both"), default="both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        minimal_loop(recipe, data, 1, training.batch_size)
        if args.mode in ("whole", "both"):
            pairs = []
            for repeat in range(args.repeats):
                if repeat % 2 == 0:
                    s = service_loop(recipe, training, data)
                    m = minimal_loop(recipe, data, args.epochs, training.batch_size)
                else:
                    m = minimal_loop(recipe, data, args.epochs, training.batch_size)
                    s = service_loop(recipe, training, data)
                pairs.append((s, m))
            report(f"resnet depth {depth} whole   ", pairs)
        if args.mode in ("lockstep", "both"):
            pairs = [lockstep(recipe, training, data, minimal_first=repeat % 2 == 1)
                     for repeat in range(args.repeats)]
            report(f"resnet depth {depth} lockstep", pairs)


def report(label: str, pairs: list[tuple[float, float]]) -> None:
    s = statistics.median(p[0] for p in pairs)
    m = statistics.median(p[1] for p in pairs)
    ratios = [p[0] / p[1] for p in pairs]
    # the fastest run of each is the least disturbed by other load on a shared machine
    best = min(p[0] for p in pairs) / min(p[1] for p in pairs)
    print(f"{label}: train_trial {s:.3f} s/epoch, minimal loop {m:.3f} s/epoch, "
          f"ratio {statistics.median(ratios):.3f} (median of {len(pairs)} paired runs; "
          f"range {min(ratios):.3f}-{max(ratios):.3f}; fastest/fastest {best:.3f}; goal <= 1.10)",
          flush=True)


if __name__ == "__main__":
    main()
