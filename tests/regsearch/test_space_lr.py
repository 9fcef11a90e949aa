"""The learning rate (and weight decay) in the search: ``space.lr`` / ``space.weight_decay`` as a
range or a list; a trial's parameters carry them and its training uses them; packing declines."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from regsearch.domain.space import params_key, suggest_params, training_for
from regsearch.domain.spec import SpecError, validate_spec

BASE: dict[str, Any] = {"name": "lr", "dataset": {"name": "digits"}, "training": {"lr": 0.001}}


def spec_with(**space: Any) -> Any:
    return validate_spec({**BASE, "space": {"placement": ["bn-act", "act"], **space}})


def test_a_searched_rate_is_in_the_params_and_the_trials_training() -> None:
    spec = spec_with(lr={"low": 1e-4, "high": 1e-1, "log": True}, weight_decay=[0.0, 1e-4])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = suggest_params(study.ask(), spec)
        assert 1e-4 <= params["lr"] <= 1e-1 and params["weight_decay"] in (0.0, 1e-4)
        trained = training_for(spec, params)
        assert (trained.training.lr, trained.training.weight_decay) == (params["lr"], params["weight_decay"])
        assert f"lr={params['lr']:.3g}" in params_key(params)
    assert spec.training.lr == 0.001, "the job's spec itself is unchanged"


def test_without_a_searched_rate_the_params_and_training_are_as_before() -> None:
    spec = spec_with()
    params = suggest_params(optuna.create_study().ask(), spec)
    assert "lr" not in params and training_for(spec, params) is spec


@pytest.mark.parametrize(("space", "field"), [
    ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "space.lr"),
    ({"lr": [0.1, -1.0]}, "space.lr"),
    ({"lr": 11.0}, "space.lr"),
    ({"weight_decay": {"low": 0.0, "high": 2.0}}, "space.weight_decay"),
])
def test_a_bad_rate_names_its_field(space: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_with(**space)
    assert caught.value.field.startswith(field)


def test_packing_declines_a_searched_rate() -> None:
    """A packed model steps all its members with one optimizer at one rate: refused at submit (422)."""
    with pytest.raises(SpecError) as caught:
        validate_spec({**BASE, "space": {"lr": [0.01, 0.001]}, "budget": {"pack": 4}})
    assert caught.value.field == "space.lr" and "budget.pack: 1" in caught.value.message
    with pytest.raises(SpecError) as caught:
        validate_spec({**BASE, "space": {"weight_decay": [0.0, 0.01]}, "budget": {"pack": 2}})
    assert caught.value.field == "space.weight_decay"
    assert validate_spec({**BASE, "space": {"lr": [0.01, 0.001]}, "budget": {"pack": 1}}).space.lr == [0.01, 0.001]


def test_the_worker_trains_with_the_trials_rate() -> None:
    """worker/trial_inputs.run_spec (every trainer reads spec.training): the trial's lr, confirmation runs too."""
    from regsearch.store.trials import Claim
    from regsearch.worker.trial_inputs import run_spec

    spec = spec_with(lr={"low": 1e-4, "high": 1e-1, "log": True}).model_dump(mode="json")
    params = {"placement": "act", "lr": 0.0314}
    claim = Claim(trial_id=1, lease="l", job_id="j", number=0, optuna_trial_id=0, params=params, spec=spec,
                  study_name="s")
    assert run_spec(claim).training.lr == 0.0314
    confirm = Claim(trial_id=2, lease="l", job_id="j", number=1, optuna_trial_id=1, params=params, spec=spec,
                    study_name="s", seed=5, confirm_of=0)
    assert (run_spec(confirm).training.lr, run_spec(confirm).training.seed) == (0.0314, 5)
