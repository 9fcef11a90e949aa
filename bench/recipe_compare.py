"""A schedule + label smoothing search beside the constant-rate one on mnist1d (issue 28).

The same placement search (TPE, the same seed, the same trials and epochs, no pruning) trained
twice with the built-in loop: once at a constant Adam rate, once with a cosine schedule after a
warm-up and label smoothing 0.1. Prints each search's best configuration by validation accuracy
and its test accuracy. A comparison of recipes on one seed, not a benchmark of speed.

    python -m bench.recipe_compare [--trials 16] [--epochs 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "constant": {},
    "cosine+smoothing": {"schedule": {"name": "cosine", "warmup_epochs": 2}, "label_smoothing": 0.1},
}


def search(recipe: dict[str, Any], trials: int, epochs: int, data_dir: Path) -> dict[str, Any]:
    import optuna
    import torch

    from regsearch.domain.space import make_recipe, suggest_params
    from regsearch.domain.spec import JobSpec
    from regsearch.store import studies
    from regsearch.worker.datasets import input_shape_for, load_dataset
    from regsearch.worker.train import to_device, train_trial

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = JobSpec.model_validate({
        "name": "recipe", "dataset": {"name": "mnist1d"}, "model": {"family": "mlp", "hidden": [256, 256, 256]},
        "space": {"placement": ["bn-act-drop", "act-bn-drop", "drop-bn-act", "bn-act", "act-drop", "act"],
                  "dropout": {"low": 0.0, "high": 0.5}},
        "training": {"epochs": epochs, "batch_size": 128, "lr": 0.002, "optimizer": "adam", **recipe},
        "budget": {"n_trials": trials}, "sampler": "tpe", "pruner": "none"})
    splits = load_dataset(spec.dataset, data_dir)
    data = to_device(splits, "cpu")
    study = optuna.create_study(direction="maximize", sampler=studies.make_sampler(spec))
    tests: dict[int, float] = {}

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, spec)
        built = make_recipe(spec, params, input_shape_for(splits, spec.model), splits.n_classes)
        summary = train_trial(built, spec.training, data).summary
        tests[trial.number] = float(summary["test_acc"])
        return float(summary["val_acc"])

    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    return {"val_acc": best.value, "test_acc": tests[best.number], "params": best.params,
            "mean_test_acc": sum(tests.values()) / len(tests)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name, recipe in RECIPES.items():
            found = search(recipe, args.trials, args.epochs, Path(folder))
            print(f"{name}: best val_acc={found['val_acc']:.3f} test_acc={found['test_acc']:.3f} "
                  f"(mean test_acc over the {args.trials} trials {found['mean_test_acc']:.3f}) "
                  f"params={found['params']}", flush=True)


if __name__ == "__main__":
    main()
