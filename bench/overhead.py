"""Per-trial service overhead: ``(workers x wall - sum of training time) / trials``.

N one-epoch trials of a tiny model through the full service, so almost everything measured is
what is not training: asking, recording, queueing, claiming, writing epochs, telling, and the
workers' idle time between trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.service import JobRun, run_job

TINY: dict[str, Any] = {
    "name": "bench-overhead",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "hidden": [16]},
    "space": {"placement": ["bn-act-drop", "act-drop", "bn-act", "act"], "dropout": {"low": 0.0, "high": 0.5},
              "bn_momentum": {"low": 0.01, "high": 0.5, "log": True}},
    "training": {"epochs": 1, "batch_size": 256, "lr": 0.003},
    "sampler": "tpe",
    "pruner": "median",
}


def measure(*, trials: int, workers: int, backend: str, data_dir: Path) -> JobRun:
    spec = dict(TINY, budget={"n_trials": trials, "parallelism": workers})
    return run_job(spec, workers=workers, backend=backend, data_dir=data_dir)
