"""Ray Tune on the efficiency bench's search: the third column next to plain Optuna.

The same spec, search space and trainer as :mod:`bench.efficiency` (``train_trial`` on mnist1d),
run by Ray Tune the way its documentation shows: ``OptunaSearch`` (a define-by-run space: the
project's own ``suggest_params``, so the same parameters and distributions, sampled by Optuna's
TPE) and the ``ASHAScheduler`` (Ray's early stopping; the others use the median pruner), with
``max_concurrent_trials = workers``, one CPU per trial and ``reuse_actors`` (each trial would
otherwise start a process that imports torch: Ray's default, and slower). Efficiency is as everywhere in the
bench: (sum of the trials' training seconds / workers) / wall time, the wall time taken from
``Tuner.fit()`` (``ray.init`` and its workers' start-up are outside it, like regsearch's warm-up).

Ray is not in the default install: ``pip install -e '.[bench]'`` (``make bench`` does).

    .venv/bin/python -m bench.ray_tune [--trials 24] [--workers 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.efficiency import spec_for
from bench.service import JobRun, distinct_share


def available() -> str | None:
    """None when Ray Tune imports, else why not."""
    try:
        import ray.tune  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError as exc:
        return f"{exc} (pip install -e '.[bench]')"
    return None


def _trainable(config: dict[str, Any], *, spec_doc: dict[str, Any], data_dir: str) -> None:
    """One Ray trial: the configuration OptunaSearch sampled, trained by the project's trainer."""
    import optuna
    import torch
    from ray import tune

    from regsearch.domain.space import make_recipe, suggest_params
    from regsearch.domain.spec import JobSpec
    from regsearch.worker.datasets import input_shape_for, load_dataset_cached
    from regsearch.worker.train import to_device, train_trial

    torch.set_num_threads(1)
    spec = JobSpec.model_validate(spec_doc)
    splits = load_dataset_cached(spec.dataset, Path(data_dir))
    # The same parameter dict regsearch builds, from the values Ray's Optuna sampled.
    params = suggest_params(optuna.trial.FixedTrial(config), spec)
    recipe = make_recipe(spec, params, input_shape_for(splits, spec.model), splits.n_classes)
    training = 0.0

    def on_epoch(m: Any) -> bool:
        nonlocal training
        training += m.seconds
        tune.report({"val_acc": m.val_acc, "training_s": training})  # ASHA may stop the trial here
        return False

    train_trial(recipe, spec.training, to_device(splits, "cpu"), on_epoch=on_epoch)


def _space(trial: Any, *, spec_doc: dict[str, Any]) -> None:
    """The define-by-run space: the project's own parameters (a module-level function, since
    Ray checkpoints its searcher with pickle: Ray's own state, not this project's data)."""
    from regsearch.domain.space import suggest_params
    from regsearch.domain.spec import JobSpec

    suggest_params(trial, JobSpec.model_validate(spec_doc))


def ray_run(trials: int, workers: int, epochs: int, data_dir: Path) -> tuple[JobRun, float]:
    """(the run, its best val_acc)."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from regsearch.domain.spec import JobSpec
    from regsearch.worker.datasets import load_dataset

    spec_doc = spec_for(trials, workers, epochs)
    spec = JobSpec.model_validate(spec_doc)
    load_dataset(spec.dataset, data_dir)  # generate and cache before timing
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    try:
        search = OptunaSearch(space=functools.partial(_space, spec_doc=spec_doc),
                              metric="val_acc", mode="max", sampler=optuna.samplers.TPESampler(seed=0))
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trainable, spec_doc=spec_doc, data_dir=str(data_dir)),
                                {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=search, scheduler=ASHAScheduler(max_t=epochs, grace_period=1),
                                        metric="val_acc", mode="max", num_samples=trials,
                                        max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(data_dir / "ray"), verbose=0),
        )
        began = time.monotonic()
        grid = tuner.fit()
        wall = time.monotonic() - began
    finally:
        ray.shutdown()
    results = [r for r in grid if r.metrics]
    training = sum(float(r.metrics.get("training_s", 0.0)) for r in results)
    stopped = sum(1 for r in results if r.metrics.get("training_iteration", epochs) < epochs)
    states = {"complete": len(results) - stopped, "stopped_early": stopped, "errored": trials - len(results)}
    best = max(float(r.metrics.get("val_acc", 0.0)) for r in results) if results else None
    configs = [{k: v for k, v in r.config.items()} for r in results]
    return JobRun(wall_s=wall, training_s=training, trials=trials, states=states, best_val_acc=best,
                  distinct=distinct_share(configs)), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    why_not = available()
    if why_not is not None:
        raise SystemExit(f"ray tune: not available: {why_not}")
    with tempfile.TemporaryDirectory() as tmp:
        run, best = ray_run(args.trials, args.workers, args.epochs, Path(tmp))
    print(json.dumps({**run.__dict__, "efficiency": run.efficiency(args.workers), "best_val_acc": best}))


if __name__ == "__main__":
    main()
