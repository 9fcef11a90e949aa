"""``regsearch trial``'s engine: parameter validation with user-facing messages, and a real run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import JobSpec
from regsearch.worker.datasets import DatasetError
from regsearch.worker.local import run_local_trial, validate_params


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()  # tiny models: intra-op threads only add contention
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spec(**space: Any) -> JobSpec:
    return JobSpec(
        name="local",
        dataset={"name": "digits"},
        model={"family": "mlp", "hidden": [32, 16]},
        training={"epochs": 2, "batch_size": 64},
        space=space or {},
    )


def test_runs_one_trial_in_process(data_dir: Path) -> None:
    seen: list[EpochMetrics] = []
    params = {
        "placement": "bn-act-drop",
        "dropout": 0.25,
        "bn_momentum": 0.05,
        "dropout_layers": "last",
    }
    trial = run_local_trial(_spec(), params, data_dir, device="cpu", on_epoch=seen.append)
    assert trial.layers == [
        "Linear(64->32)",
        "BatchNorm1d(m=0.05)",
        "ReLU",
        "Linear(32->16)",
        "BatchNorm1d(m=0.05)",
        "ReLU",
        "Dropout(p=0.25)",
        "Linear(16->10)",
    ]
    assert trial.recipe["input_shape"] == [64] and trial.recipe["n_classes"] == 10
    assert trial.params == {**params, "bn_layers": "all"}
    assert len(trial.result.epochs) == 2 and seen == trial.result.epochs
    assert trial.result.summary["val_acc"] > 0.5 and trial.result.device == "cpu"


def test_layer_selection_defaults_to_the_specs_fixed_choice() -> None:
    spec = _spec(dropout_layers="last", bn_layers=["all", "last"])
    clean = validate_params(spec, {"placement": "drop-bn-act", "dropout": 0, "bn_momentum": 1})
    assert clean == {
        "placement": "drop-bn-act",
        "dropout": 0.0,
        "dropout_layers": "last",
        "bn_momentum": 1.0,
        "bn_layers": "all",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([1, 2], "params: give a JSON object"),
        ({}, "params.placement: missing"),
        ({"placement": "bn-drop"}, "params.placement: placement 'bn-drop' has no 'act'"),
        ({"placement": "act-act"}, "params.placement: placement 'act-act' repeats a token"),
        ({"placement": "act-pool"}, "params.placement: unknown token 'pool'"),
        ({"placement": 3}, "params.placement: a placement is a non-empty string"),
        (
            {"placement": "act-drop"},
            "params.dropout: required because placement 'act-drop' has 'drop'",
        ),
        (
            {"placement": "bn-act"},
            "params.bn_momentum: required because placement 'bn-act' has 'bn'",
        ),
        ({"placement": "act", "dropout": 0.2}, "params.dropout: placement 'act' has no 'drop'"),
        ({"placement": "act", "bn_layers": "all"}, "params.bn_layers: placement 'act' has no 'bn'"),
        (
            {"placement": "act-drop", "dropout": 1.0},
            "params.dropout: 1.0 is out of range: 0 <= dropout < 1",
        ),
        ({"placement": "act-drop", "dropout": -0.1}, "params.dropout: -0.1 is out of range"),
        (
            {"placement": "act-drop", "dropout": "0.3"},
            "params.dropout: '0.3' is not a finite number",
        ),
        ({"placement": "act-drop", "dropout": True}, "params.dropout: True is not a finite number"),
        (
            {"placement": "act-drop", "dropout": float("nan")},
            "params.dropout: nan is not a finite number",
        ),
        (
            {"placement": "bn-act", "bn_momentum": 0},
            "params.bn_momentum: 0.0 is out of range: 0 < bn_momentum <= 1",
        ),
        ({"placement": "bn-act", "bn_momentum": 1.5}, "params.bn_momentum: 1.5 is out of range"),
        (
            {"placement": "act-drop", "dropout": 0.1, "dropout_layers": "last-3"},
            "params.dropout_layers: 'last-3' asks for more than the model's 2 slots",
        ),
        (
            {"placement": "act-drop", "dropout": 0.1, "dropout_layers": "first"},
            "params.dropout_layers: 'first' is not a layer selection",
        ),
        ({"placement": "act", "lr": 0.1}, "params.lr: unknown parameter"),
    ],
)
def test_bad_params_name_the_parameter(params: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_params(_spec(), params)
    assert str(info.value).startswith(message)


def test_params_are_checked_before_any_data_is_loaded(data_dir: Path) -> None:
    spec = JobSpec(name="local", dataset={"name": "npz", "path": "missing.npz"})
    with pytest.raises(ValueError, match="^params.dropout") as info:
        run_local_trial(spec, {"placement": "act-drop"}, data_dir, device="cpu")
    assert not isinstance(info.value, DatasetError)
    with pytest.raises(DatasetError, match="^dataset.path: missing.npz does not exist"):
        run_local_trial(spec, {"placement": "act"}, data_dir, device="cpu")


def test_unknown_device_is_refused(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="^device: "):
        run_local_trial(_spec(), {"placement": "act"}, data_dir, device="gpu")
