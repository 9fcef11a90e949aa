"""The search space is conditional and define-by-run; a recipe describes each block exactly."""

from __future__ import annotations

import optuna
import pytest

from regsearch.domain.space import make_recipe, suggest_params
from regsearch.domain.spec import validate_spec


def spec_with(**space: object):
    return validate_spec({"name": "t", "dataset": {"name": "digits"}, "model": {"hidden": [32, 32, 32]}, "space": space})


def test_no_dropout_without_drop_and_no_momentum_without_bn() -> None:
    spec = spec_with(placement=["act", "bn-act", "act-drop", "bn-act-drop"], dropout_layers=["all", "last"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = suggest_params(trial, spec)
        tokens = params["placement"].split("-")
        assert ("dropout" in trial.params) == ("drop" in tokens)
        assert ("bn_momentum" in trial.params) == ("bn" in tokens)
        assert ("dropout" in params) == ("drop" in tokens)
        assert ("bn_momentum" in params) == ("bn" in tokens)
        seen.add(params["placement"])
        study.tell(trial, 0.5)
    assert seen == {"act", "bn-act", "act-drop", "bn-act-drop"}


def test_fixed_entries_are_not_searched_but_recorded() -> None:
    spec = spec_with(placement="bn-act-drop", dropout=0.25, bn_momentum=0.1, bn_layers="last")
    study = optuna.create_study()
    trial = study.ask()
    params = suggest_params(trial, spec)
    assert trial.params == {}
    assert params == {"placement": "bn-act-drop", "dropout": 0.25, "dropout_layers": "all", "bn_momentum": 0.1, "bn_layers": "last"}


def test_recipe_orders_each_block() -> None:
    spec = spec_with()
    params = {"placement": "drop-bn-act", "dropout": 0.3, "dropout_layers": "last-2", "bn_momentum": 0.05, "bn_layers": "last"}
    recipe = make_recipe(spec, params, [64], 10)
    assert [b["order"] for b in recipe["slots"]] == [["act"], ["drop", "act"], ["drop", "bn", "act"]]
    assert [b["dropout"] for b in recipe["slots"]] == [None, 0.3, 0.3]
    assert [b["bn_momentum"] for b in recipe["slots"]] == [None, None, 0.05]
    assert recipe["input_shape"] == [64] and recipe["n_classes"] == 10


@pytest.mark.parametrize("sampler", [optuna.samplers.TPESampler(seed=1, group=True), optuna.samplers.RandomSampler(seed=1)])
def test_recipes_are_json(sampler: optuna.samplers.BaseSampler) -> None:
    import json

    spec = spec_with(placement=["bn-act-drop", "act"])
    study = optuna.create_study(sampler=sampler)
    for _ in range(5):
        trial = study.ask()
        recipe = make_recipe(spec, suggest_params(trial, spec), [64], 10)
        assert json.loads(json.dumps(recipe)) == recipe
        study.tell(trial, 0.1)
