"""Efficiency of a search: (sum of training time / workers) / wall time.

regsearch (the full service) against plain Optuna (``study.optimize`` in the same number of
processes on the same kind of storage), with the same objective: the same spec, search space,
sampler, pruner, epochs and trainer.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

from bench.service import JobRun, distinct_share, fresh_database, run_job

SPEC: dict[str, Any] = {
    "name": "bench-efficiency",
    "dataset": {"name": "mnist1d"},
    "model": {"family": "mlp", "hidden": [256, 256, 256]},
    "space": {"placement": ["bn-act-drop", "act-bn-drop", "drop-bn-act", "bn-act", "act-drop", "act"],
              "dropout": {"low": 0.0, "high": 0.6}, "bn_momentum": {"low": 0.01, "high": 0.5, "log": True},
              "dropout_layers": ["all", "last"], "bn_layers": ["all"]},
    "training": {"epochs": 10, "batch_size": 128, "lr": 0.002, "optimizer": "adam", "seed": 0},
    "sampler": "tpe",
    "pruner": "median",
}


def spec_for(trials: int, workers: int, epochs: int) -> dict[str, Any]:
    return dict(SPEC, training=dict(SPEC["training"], epochs=epochs), budget={"n_trials": trials, "parallelism": workers})


def regsearch_run(trials: int, workers: int, epochs: int, backend: str, data_dir: Path, pack: int = 1,
                  parallelism: int | None = None) -> JobRun:
    """The search through the full service; with ``pack`` K, each worker trains packs of K trials
    of one structure (budget.pack), with room for a pack per worker (parallelism K x workers, unless
    ``parallelism`` says otherwise: the unpacked job that a packed one is compared with has the same)."""
    spec = spec_for(trials, workers, epochs)
    if pack > 1 or parallelism is not None:
        spec["budget"] = dict(spec["budget"], pack=pack, parallelism=parallelism or pack * workers)
    return run_job(spec, workers=workers, backend=backend, data_dir=data_dir)


def _optuna_process(url: str, study_name: str, spec_doc: dict[str, Any], data_dir: str, n_trials: int,
                    ready: Any, start: Any, out: Any) -> None:
    """One plain-Optuna process: ``study.optimize`` with the same trainer and pruner."""
    import optuna
    import torch

    from regsearch.domain.space import make_recipe, suggest_params
    from regsearch.domain.spec import JobSpec
    from regsearch.store import studies
    from regsearch.worker.datasets import input_shape_for, load_dataset
    from regsearch.worker.train import to_device, train_trial

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = JobSpec.model_validate(spec_doc)
    splits = load_dataset(spec.dataset, Path(data_dir))
    data = to_device(splits, "cpu")
    study = optuna.load_study(study_name=study_name, storage=studies.optuna_storage(url),
                              sampler=studies.make_sampler(spec), pruner=studies.make_pruner(spec))
    training = 0.0

    def objective(trial: optuna.Trial) -> float:
        nonlocal training
        params = suggest_params(trial, spec)
        recipe = make_recipe(spec, params, input_shape_for(splits, spec.model), splits.n_classes)

        def on_epoch(m: Any) -> bool:
            trial.report(m.val_acc, m.epoch)
            return trial.should_prune()

        result = train_trial(recipe, spec.training, data, on_epoch=on_epoch)
        training += sum(e.seconds for e in result.epochs)
        if result.stopped_early:
            raise optuna.TrialPruned()
        return float(result.summary["val_acc"])

    ready.put(True)
    start.wait()
    study.optimize(objective, n_trials=n_trials)
    out.put(training)


def optuna_run(trials: int, workers: int, epochs: int, backend: str, data_dir: Path) -> JobRun:
    import optuna

    from regsearch.domain.spec import JobSpec
    from regsearch.store import studies
    from regsearch.store.migrate import upgrade
    from regsearch.worker.datasets import load_dataset

    spec_doc = spec_for(trials, workers, epochs)
    spec = JobSpec.model_validate(spec_doc)
    load_dataset(spec.dataset, data_dir)  # generate and cache before timing
    with fresh_database(backend, data_dir) as (database_url, _broker):
        url = database_url or f"sqlite:///{data_dir / 'optuna.db'}"
        upgrade(url)
        study_name = "plain-optuna"
        optuna.create_study(study_name=study_name, storage=studies.optuna_storage(url), directions=spec.directions)
        ctx = multiprocessing.get_context("spawn")
        ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
        shares = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
        processes = [ctx.Process(target=_optuna_process, args=(url, study_name, spec_doc, str(data_dir), n, ready, start, out))
                     for n in shares]
        for p in processes:
            p.start()
        for _ in processes:  # imports and dataset loading are not measured (as regsearch's warm-up)
            ready.get(timeout=300)
        began = time.monotonic()
        start.set()
        training = sum(out.get() for _ in processes)
        wall = time.monotonic() - began
        for p in processes:
            p.join()
        states: dict[str, int] = {}
        done = optuna.load_study(study_name=study_name, storage=studies.optuna_storage(url)).trials
        for t in done:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        studies.optuna_storage.cache_clear()
    complete = [t.value for t in done if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    return JobRun(wall_s=wall, training_s=training, trials=trials, states=states,
                  best_val_acc=max(complete) if complete else None, distinct=distinct_share([t.params for t in done]))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(optuna_run(8, 2, 5, "embedded", Path(tmp)).__dict__))
