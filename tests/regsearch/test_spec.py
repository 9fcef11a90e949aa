"""The job spec refuses bad input with a message naming the field, and loads YAML and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regsearch.cli.common import EXAMPLE_SPEC
from regsearch.domain.spec import (
    JobSpec,
    SpecError,
    all_placements,
    load_spec,
    parse_placement,
    selected_layers,
    validate_spec,
)

# the spec `regsearch demo` runs when given none (a wrong path here broke `make demo` once)
EXAMPLE = EXAMPLE_SPEC
INTERFACE_EXAMPLE = {
    "name": "mnist1d-mlp",
    "dataset": {"name": "mnist1d"},
    "model": {"family": "mlp", "hidden": [256, 256, 256]},
    "space": {
        "placement": ["bn-act-drop", "act-bn-drop", "drop-bn-act", "bn-act", "act-drop", "act"],
        "dropout": {"low": 0.0, "high": 0.6},
        "bn_momentum": {"low": 0.01, "high": 0.5, "log": True},
        "dropout_layers": ["all", "last"],
        "bn_layers": ["all"],
    },
    "training": {"epochs": 30, "batch_size": 128, "lr": 0.001, "optimizer": "adam", "seed": 0},
    "objective": {"metrics": ["val_acc"], "directions": ["maximize"]},
    "budget": {"n_trials": 40, "parallelism": 2},
    "sampler": "tpe",
    "pruner": "median",
}


def with_change(path: str, value: object) -> dict:
    doc = json.loads(json.dumps(INTERFACE_EXAMPLE))
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


def test_interface_example_is_valid() -> None:
    spec = validate_spec(INTERFACE_EXAMPLE)
    assert spec.directions == ["maximize"]
    assert spec.model.hidden == [256, 256, 256] and spec.model.n_slots() == 3


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("space.dropout", {"low": 0.5, "high": 0.1}, "space.dropout"),
        ("space.dropout", {"low": 0.0, "high": 1.0}, "space.dropout"),
        ("space.dropout", 1.2, "space.dropout"),
        ("space.bn_momentum", {"low": 0.0, "high": 0.5}, "space.bn_momentum"),
        ("space.bn_momentum", {"low": 0.1, "high": 0.5, "lg": True}, "space.bn_momentum"),
        ("space.placement", ["bn-act-dropout"], "space.placement"),
        ("space.placement", ["bn-drop"], "space.placement"),
        ("space.placement", ["act-act"], "space.placement"),
        ("space.dropout_layers", ["last-0"], "space.dropout_layers"),
        ("space.bn_layers", ["last-4"], "space.bn_layers"),
        ("budget.n_trials", 0, "budget.n_trials"),
        ("training.epochs", 0, "training.epochs"),
        ("training.lr", float("nan"), "training.lr"),
        ("training.optimizer", "adagrad", "training.optimizer"),
        ("dataset.path", "x.npz", "dataset"),
        ("sampler", "cmaes", "sampler"),
        ("model.colour", "red", "model.colour"),
        ("objective.directions", ["maximize", "minimize"], "objective"),
    ],
)
def test_bad_fields_are_named(path: str, value: object, field: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_spec(with_change(path, value))
    assert info.value.field.startswith(field), (info.value.field, info.value.message)


@pytest.mark.parametrize("path", ["../secret.npz", "/etc/passwd", "a/../../b.npz", "C:\\x.npz", "a\\..\\..\\b.csv"])
def test_dataset_paths_stay_inside_the_data_dir(path: str) -> None:
    doc = with_change("dataset", {"name": "npz", "path": path})
    with pytest.raises(SpecError) as info:
        validate_spec(doc)
    assert info.value.field == "dataset.path"


def test_unknown_top_level_field() -> None:
    doc = dict(INTERFACE_EXAMPLE, priority="high")
    with pytest.raises(SpecError) as info:
        validate_spec(doc)
    assert info.value.field == "priority"


def test_multi_objective_needs_no_pruner() -> None:
    doc = with_change("objective", {"metrics": ["val_acc", "gap"]})
    with pytest.raises(SpecError) as info:
        validate_spec(doc)
    assert info.value.field == "pruner"
    doc["pruner"] = "none"
    assert validate_spec(doc).directions == ["maximize", "minimize"]


def test_grid_needs_finite_values() -> None:
    doc = with_change("sampler", "grid")
    with pytest.raises(SpecError) as info:
        validate_spec(doc)
    assert info.value.field == "space.dropout"
    doc["space"]["dropout"] = [0.1, 0.3]
    doc["space"]["bn_momentum"] = 0.1
    validate_spec(doc)


def test_yaml_and_json_both_load(tmp_path: Path) -> None:
    assert load_spec(EXAMPLE).name == "mnist1d-mlp-demo"
    as_json = tmp_path / "spec.json"
    as_json.write_text(json.dumps(INTERFACE_EXAMPLE))
    assert load_spec(as_json) == validate_spec(INTERFACE_EXAMPLE)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_placements_and_layer_selection() -> None:
    placements = all_placements()
    assert len(placements) == 11 and len(set(placements)) == 11
    assert all(parse_placement(p) for p in placements)
    assert selected_layers("all", 3) == [0, 1, 2]
    assert selected_layers("none", 3) == []
    assert selected_layers("last", 3) == [2]
    assert selected_layers("last-2", 3) == [1, 2]


def test_spec_round_trips_through_json() -> None:
    spec = validate_spec(INTERFACE_EXAMPLE)
    again = JobSpec.model_validate(json.loads(spec.model_dump_json(exclude_none=True)))
    assert again == spec
