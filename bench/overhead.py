"""Per-trial service overhead: ``(workers x wall - sum of training time) / trials``.

N one-epoch trials of a tiny model through the full service, so almost everything measured is
what is not training: asking, recording, queueing, claiming, writing epochs, telling, and the
workers' idle time between trials.

    .venv/bin/python -m bench.overhead [--trials 200] [--sampler tpe|random] [--backend auto]
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


def measure(*, trials: int, workers: int, backend: str, data_dir: Path, sampler: str = "tpe") -> JobRun:
    spec = dict(TINY, sampler=sampler, budget={"n_trials": trials, "parallelism": workers})
    return run_job(spec, workers=workers, backend=backend, data_dir=data_dir)


def main() -> None:
    """The overhead alone, e.g. with the random sampler to take TPE's growing ``ask`` out."""
    import argparse
    import tempfile

    from bench.service import pick_backend

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--sampler", choices=["tpe", "random"], default="tpe")
    parser.add_argument("--backend", choices=["auto", "production", "embedded"], default="auto")
    args = parser.parse_args()
    backend, why = pick_backend(args.backend)
    print(f"backend: {why}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        job = measure(trials=args.trials, workers=2, backend=backend, data_dir=Path(tmp), sampler=args.sampler)
    print(f"overhead: trials={job.trials} sampler={args.sampler} overhead_ms_per_trial={job.overhead_ms_per_trial(2):.1f} "
          f"wall_s={job.wall_s:.2f}")


if __name__ == "__main__":
    main()
