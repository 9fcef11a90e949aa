"""One line per model, written in one place (regsearch.domain.model_label), and slot names."""

from __future__ import annotations

import pytest

from regsearch.domain.model_label import format_model, has_slot_names, model_label, slot_labels
from regsearch.domain.spec import JobSpec, ModelSpec


@pytest.mark.parametrize(("model", "line"), [
    ({"family": "resnet", "depth": 20}, "resnet depth=20 width=16 activation=relu"),
    ({"family": "mlp", "hidden": [32, 32]}, "mlp hidden=[32,32] activation=relu"),
    ({"family": "cnn"}, "cnn channels=[32,32] kernel_size=3 activation=relu"),
    ({"family": "vgg", "head": []}, "vgg channels=[32,64,128] convs_per_stage=2 head=[] activation=relu"),
    ({"family": "auto", "network": "resnet18"}, "auto network=resnet18"),
])
def test_every_knob_of_the_validated_model_compactly(model: dict, line: str) -> None:
    assert ModelSpec.model_validate(model).describe() == line
    assert model_label({"name": "j", "dataset": {"name": "digits"}, "model": model}) == line
    job = JobSpec.model_validate({"name": "j", "dataset": {"name": "digits"}, "model": model})
    assert model_label(job) == line


def test_stored_specs_read_leniently() -> None:
    assert format_model({"family": "x", "a": 1.5, "b": True, "c": None, "d": {"k": [1, 2]}}) == \
        'x a=1.5 b=true c=null d={"k":[1,2]}'
    assert model_label({"model": {"family": "gone", "width": 8}}) == "gone width=8"  # unknown here: as stored
    assert model_label({"name": "old"}) == "mlp hidden=[256,256,256] activation=relu"  # the default model
    assert model_label(None) is None and model_label({}) is None and model_label({"model": 3}) is None


def test_slot_labels_use_the_users_layer_names_else_the_index() -> None:
    recipe = {"slots": [{"name": "layer1.0.conv1"}, {"order": ["act"]}, "junk"]}
    assert slot_labels(recipe) == ["layer1.0.conv1", "slot 1", "slot 2"] and has_slot_names(recipe)
    assert slot_labels({"slots": [{}]}) == ["slot 0"] and not has_slot_names({"slots": [{}]})
    assert slot_labels(None) == [] and not has_slot_names({"blocks": []})
