"""The torch-free half of the family registry: knobs in the spec, slot counts, recipes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from regsearch.domain import families
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import SpecError, validate_spec

ROOT = Path(__file__).resolve().parents[2]


def _spec(model: Any, **space: Any) -> Any:
    return validate_spec({"name": "t", "dataset": {"name": "digits"}, "model": model, "space": space})


@pytest.mark.parametrize(
    ("model", "stored"),
    [
        ({"family": "mlp", "hidden": [64, 32]}, {"family": "mlp", "hidden": [64, 32], "activation": "relu"}),
        ({"hidden": [8]}, {"family": "mlp", "hidden": [8], "activation": "relu"}),
        # what 0.1 stored for every mlp (its one model type had kernel_size for all families)
        ({"family": "mlp", "hidden": [8], "kernel_size": 3, "activation": "gelu"},
         {"family": "mlp", "hidden": [8], "activation": "gelu"}),
        ({"family": "cnn", "channels": [16], "kernel_size": 5},
         {"family": "cnn", "channels": [16], "kernel_size": 5, "activation": "relu"}),
        ({"family": "cnn"}, {"family": "cnn", "channels": [32, 32], "kernel_size": 3, "activation": "relu"}),
        ({"family": "resnet"}, {"family": "resnet", "depth": 8, "width": 16, "activation": "relu"}),
        ({"family": "vgg", "head": []},
         {"family": "vgg", "channels": [32, 64, 128], "convs_per_stage": 2, "head": [], "activation": "relu"}),
    ],
)  # fmt: skip
def test_specs_of_every_family_are_accepted_and_stored_with_defaults(model: Any, stored: Any) -> None:
    spec = _spec(model)
    assert spec.model.model_dump() == stored
    assert _spec(json.loads(spec.model_dump_json())["model"]) == spec  # round trip


@pytest.mark.parametrize(
    ("model", "field", "message"),
    [
        ({"family": "resnet", "depth": 10}, "model.depth", "must be 6n+2, e.g. 8, 14, 20"),
        ({"family": "resnet", "depth": 2}, "model.depth", "must be 6n+2"),
        ({"family": "resnet", "width": 0}, "model.width", "greater than or equal to 1"),
        ({"family": "resnet", "hidden": [8]}, "model.hidden", "unknown field"),
        ({"family": "vgg", "convs_per_stage": 0}, "model.convs_per_stage", ""),
        ({"family": "vgg", "chanels": [8]}, "model.chanels", "did you mean `channels`?"),
        ({"family": "mlp", "channels": [8]}, "model.channels", "unknown field"),
        ({"family": "cnn", "channels": [8], "activation": "swish"}, "model.activation", "relu"),
        ({"family": "transformer"}, "model.family",
         "unknown family 'transformer' (known: auto, cnn, mlp, resnet, vgg)"),
        ({"family": 3}, "model.family", "unknown family 3"),
        ("mlp", "model", "give an object"),
    ],
)  # fmt: skip
def test_bad_models_name_the_field(model: Any, field: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        _spec(model)
    assert info.value.field == field and message in info.value.message


@pytest.mark.parametrize(
    ("model", "slots"),
    [
        ({"family": "mlp", "hidden": [4, 4, 4]}, 3),
        ({"family": "cnn", "channels": [4, 4]}, 2),
        ({"family": "resnet", "depth": 8}, 7),  # stem + 2 convs x 3 blocks
        ({"family": "resnet", "depth": 20}, 19),
        ({"family": "vgg"}, 3 * 2 + 1),
        ({"family": "vgg", "channels": [8], "convs_per_stage": 3, "head": [16, 16]}, 5),
    ],
)
def test_slot_counts(model: Any, slots: int) -> None:
    assert _spec(model).model.n_slots() == slots


def test_layer_selections_are_checked_against_the_slot_count() -> None:
    _spec({"family": "resnet"}, dropout_layers=["last-7"])
    with pytest.raises(SpecError) as info:
        _spec({"family": "resnet"}, dropout_layers=["last-8"])
    assert info.value.field == "space.dropout_layers" and "7 slots" in info.value.message


def test_recipes_record_family_knobs_and_each_slot() -> None:
    spec = _spec({"family": "vgg", "channels": [8, 16], "convs_per_stage": 1, "head": [32, 32]})
    params = {"placement": "bn-act-drop", "dropout": 0.5, "dropout_layers": "last-2",
              "bn_momentum": 0.1, "bn_layers": "all"}  # fmt: skip
    recipe = make_recipe(spec, params, [1, 8, 8], 10)
    assert recipe["version"] == 2 and recipe["family"] == "vgg"
    assert recipe["knobs"] == {"channels": [8, 16], "convs_per_stage": 1, "head": [32, 32], "activation": "relu"}
    assert [s["order"] for s in recipe["slots"]] == [["bn", "act"]] * 2 + [["bn", "act", "drop"]] * 2
    assert [s["dropout"] for s in recipe["slots"]] == [None, None, 0.5, 0.5]
    assert json.loads(json.dumps(recipe)) == recipe


def test_every_family_publishes_its_knobs_as_json_schema() -> None:
    for name in families.names():
        schema = families.knobs_schema(name)
        key = "network" if name == "auto" else "activation"  # auto keeps the network's own
        assert schema["type"] == "object" and key in schema["properties"]
        assert families.family(name).slots_doc and families.family(name).source == "builtin"
    assert families.knobs_schema("resnet")["properties"]["depth"]["default"] == 8


def test_the_spec_side_of_the_registry_imports_no_torch() -> None:
    code = ("import sys, regsearch.domain.families, regsearch.domain.spec, regsearch.domain.space;"
            "assert 'torch' not in sys.modules, 'torch imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
