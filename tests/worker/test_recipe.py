"""training.schedule / label_smoothing / grad_clip: validated with errors naming the field, refused
with packing, applied by the built-in loop (regsearch.domain.recipe, worker/train.py)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from regsearch.domain.recipe import ScheduleSpec, lr_factor
from regsearch.domain.spec import SpecError, validate_spec


def spec(budget: dict[str, Any] | None = None, **training: Any) -> dict[str, Any]:
    return {"name": "r", "dataset": {"name": "digits"}, "model": {"family": "mlp", "hidden": [16]},
            "training": {"epochs": 4, "batch_size": 64, **training}, "budget": budget or {}}


@pytest.mark.parametrize(("training", "budget", "field", "words"), [
    ({"schedule": {"name": "cosine", "warmup_epochs": 4}}, None, "training.schedule.warmup_epochs", "leave none"),
    ({"schedule": {"name": "linear"}}, None, "training.schedule.name", "cosine"),
    ({"schedule": {"name": "step", "gamma": 0}}, None, "training.schedule.gamma", ""),
    ({"label_smoothing": 1.0}, None, "training.label_smoothing", ""),
    ({"grad_clip": 0}, None, "training.grad_clip", ""),
    ({"grad_clip": float("inf")}, None, "training.grad_clip", ""),
    ({"label_smoothing": 0.1}, {"pack": 4}, "budget.pack", "training.label_smoothing needs pack: 1"),
    ({"schedule": {"name": "onecycle"}}, {"pack": 4}, "budget.pack", "training.schedule needs pack: 1"),
    ({"trainer": "mine", "grad_clip": 1.0}, None, "training.grad_clip", "training.options"),
])
def test_bad_recipes_name_their_field(training: dict, budget: dict | None, field: str, words: str) -> None:
    with pytest.raises(SpecError) as error:
        validate_spec(spec(budget, **training))
    assert error.value.field == field and words in error.value.message, error.value


def test_a_constant_recipe_still_packs() -> None:
    assert validate_spec(spec({"pack": 4}, schedule={"name": "constant"})).budget.pack == 4


def test_the_schedules() -> None:
    steps, epochs = 10, 4
    factors = {name: [lr_factor(ScheduleSpec(name=name, warmup_epochs=1 if name != "onecycle" else 0), s, steps, epochs)
                      for s in range(steps * epochs)] for name in ("constant", "cosine", "step", "onecycle")}
    assert factors["constant"][0] == 0.1 and factors["constant"][9:] == [1.0] * 31  # warm-up, then 1
    cosine = factors["cosine"]
    assert cosine[10] == 1.0 and all(a >= b for a, b in itertools.pairwise(cosine[10:])) and cosine[-1] < 0.01
    step = [lr_factor(ScheduleSpec(name="step", step_epochs=2, gamma=0.5), s, steps, epochs) for s in range(40)]
    assert step[0] == step[19] == 1.0 and step[20] == step[39] == 0.5
    onecycle = factors["onecycle"]
    assert math.isclose(onecycle[0], 1 / 25) and max(onecycle) == pytest.approx(1.0) and onecycle[-1] < 0.01
    assert lr_factor(None, 5, steps, epochs) == 1.0


def test_the_built_in_loop_applies_the_recipe(tmp_path: Path) -> None:
    from regsearch.domain.space import make_recipe
    from regsearch.worker.datasets import input_shape_for, load_dataset_cached
    from regsearch.worker.train import to_device, train_trial

    def run(**training: Any) -> dict[str, Any]:
        job = validate_spec(spec(**training))
        splits = load_dataset_cached(job.dataset, tmp_path)
        params = {"placement": "bn-act", "bn_momentum": 0.1, "dropout_layers": "all", "bn_layers": "all"}
        recipe = make_recipe(job, params, input_shape_for(splits, job.model), splits.n_classes)
        return train_trial(recipe, job.training, to_device(splits, "cpu")).summary

    plain = run()
    for recipe in ({"label_smoothing": 0.2}, {"grad_clip": 0.01}, {"schedule": {"name": "onecycle"}},
                   {"schedule": {"name": "cosine", "warmup_epochs": 1}}, {"schedule": {"name": "step"}}):
        changed = run(**recipe)
        assert changed["val_loss"] != plain["val_loss"], recipe  # each one changes the training


def test_a_dumped_spec_with_a_plugin_trainer_still_validates() -> None:
    # the CLI submits the spec as validated, defaults included: they change nothing, so they pass
    job = validate_spec(spec(trainer="mine"))
    assert validate_spec(job.model_dump(mode="json", exclude_none=True)).training.trainer == "mine"
