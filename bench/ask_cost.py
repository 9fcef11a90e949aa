"""The coordinator's ask as the study grows: ask + tell per trial against a job that has N trials.

What grows with a job is the sampler's ask (TPE reads every trial it is given) and what the
coordinator keeps for it; the rest of a trial's overhead (queueing, claiming, writing epochs and
the result) does not depend on N. So this bench times the coordinator's own path without the
service around it: a :class:`~regsearch.services.coordinator.mirror.StudyMirror` on a fresh
database of the bench's backend, grown to N trials (asked with fixed parameters drawn uniformly,
told a synthetic objective: cheap, no model consulted), then ``--asks`` search asks (the job's
TPE) each told its outcome, timed in the coordinator's CPU time (on a 2-core machine shared by the
workers, CPU is what a trial's overhead is made of; wall time is printed beside it). Sizes in one job, in order, so growing to 5,000 costs 5,000
record inserts once.

    .venv/bin/python -m bench.ask_cost [--sizes 100 1000 5000] [--asks 30] [--no-window] [--backend auto]

``--no-window`` gives TPE the whole history (Optuna's own growth, for comparison). Last line:
``ask_cost: ask_ms_at_100=... ask_ms_at_1000=... ask_ms_at_5000=... ask_growth=G`` (G: the largest
size's cost over the smallest's).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from bench.overhead import TINY
from bench.service import fresh_database, pick_backend
from regsearch.domain.space import suggest_params
from regsearch.domain.spec import validate_spec
from regsearch.domain.states import TrialState
from regsearch.domain.trial_end import trial_end
from regsearch.services.coordinator.mirror import StudyMirror
from regsearch.store import jobs as job_store
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade


def objective(params: dict[str, Any], rng: random.Random) -> float:
    """A made-up val_acc with structure for TPE to find (placement matters most, then dropout)."""
    base = {"bn-act-drop": 0.80, "act-drop": 0.74, "bn-act": 0.70, "act": 0.62}[params["placement"]]
    dropout = params.get("dropout")
    shaped = 0.0 if dropout is None else -0.3 * (dropout - 0.2) ** 2
    return base + shaped + rng.gauss(0.0, 0.01)


def measure(sizes: list[int], *, asks: int, backend: str, data_dir: Path, window: bool = True,
            seed: int = 0) -> dict[int, float]:
    """Median milliseconds of CPU (this thread's: the database's own work and other processes on
    a shared machine left out) of one search ask + its tell at each size, the job grown in between."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(seed)
    spec = validate_spec(dict(TINY, budget={"n_trials": max(sizes) + asks * len(sizes), "parallelism": 2}))
    metrics = list(spec.objective.metrics)
    out: dict[int, float] = {}
    with fresh_database(backend, data_dir) as (database_url, _):
        url = database_url or f"sqlite:///{data_dir / 'ask_cost.db'}"
        upgrade(url)
        db = Database(url, pre_ping=False)
        try:
            job = job_store.create_job(db, spec=spec).job
            mirror = StudyMirror(db, job.study_name, spec, window=window)
            uniform = optuna.create_study(directions=spec.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
            have = 0
            for size in sorted(sizes):
                while have < size:  # history: uniform draws, asked as fixed parameters (no model)
                    draw = uniform.ask()
                    suggest_params(draw, spec)
                    params = dict(draw.params)
                    number, _, full = mirror.ask(fixed_params=params)
                    mirror.learn(number, trial_end(TrialState.COMPLETE, {"val_acc": objective(full, rng)}, metrics))
                    have += 1
                timings, walls = [], []
                for _ in range(asks):
                    start, wall = time.thread_time(), time.perf_counter()
                    number, _, full = mirror.ask()
                    mirror.learn(number, trial_end(TrialState.COMPLETE, {"val_acc": objective(full, rng)}, metrics))
                    timings.append(1000 * (time.thread_time() - start))
                    walls.append(1000 * (time.perf_counter() - wall))
                    have += 1
                out[size] = statistics.median(timings)
                print(f"  {size} trials: ask + tell {out[size]:.1f} ms of the coordinator's CPU, "
                      f"{statistics.median(walls):.1f} ms wall (medians of {asks}; "
                      f"TPE sees {len(mirror.memory.get_trials(deepcopy=False))} trials)", flush=True)
        finally:
            db.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--asks", type=int, default=30)
    parser.add_argument("--no-window", action="store_true", help="TPE sees every trial (Optuna's own growth)")
    parser.add_argument("--backend", choices=["auto", "production", "embedded"], default="auto")
    args = parser.parse_args()
    if any(n < 1 for n in args.sizes) or args.asks < 1:
        parser.error("--sizes and --asks: positive numbers")
    backend, why = pick_backend(args.backend)
    print(f"backend: {why}; window: {'no' if args.no_window else 'yes'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        costs = measure(args.sizes, asks=args.asks, backend=backend, data_dir=Path(tmp), window=not args.no_window)
    small, large = min(costs), max(costs)
    print("ask_cost: " + " ".join(f"ask_ms_at_{n}={ms:.1f}" for n, ms in costs.items())
          + f" ask_growth={costs[large] / costs[small]:.2f}")


if __name__ == "__main__":
    main()
