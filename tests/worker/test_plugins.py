"""Plugin families come from installed entry points (group ``regsearch.models``) and nowhere else.

The plugin here is a real installed distribution: a package and its ``.dist-info`` (METADATA,
entry_points.txt) in a folder on ``sys.path``, found by ``importlib.metadata`` like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from regsearch.domain import families as domain
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import SpecError, validate_spec
from regsearch.worker import families
from regsearch.worker.local import run_local_trial
from regsearch.worker.models import BuildError, build_model, layer_order

PLUGIN = '''
import math
import pydantic
from torch import nn


class TinyNet:
    """Two hidden Linear layers, each followed by its slot."""

    slots_doc = "one per hidden Linear (two)"

    class Knobs(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        width: int = pydantic.Field(default=16, ge=1)
        lie: int = 0  # slots() says this many more than build uses
        fail: bool = False

    def slots(self, knobs, input_shape):
        return 2 + knobs.lie

    def input_shape(self, knobs, sample_shape):
        return [math.prod(sample_shape)]

    def build(self, knobs, input_shape, n_classes, slot):
        if knobs.fail:
            raise RuntimeError("tinynet cannot build this")
        w = knobs.width
        return nn.Sequential(
            nn.Linear(input_shape[0], w), slot(0, w, 0), nn.Linear(w, w), slot(1, w, 0), nn.Linear(w, n_classes)
        )
'''
ENTRY_POINTS = """[regsearch.models]
tinynet = tinypkg:TinyNet
mlp = tinypkg:TinyNet
broken = tinypkg:DoesNotExist
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    site = tmp_path / "site"
    (site / "tinypkg").mkdir(parents=True)
    (site / "tinypkg" / "__init__.py").write_text(PLUGIN)
    info = site / "tinypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    # this test's registrations end with it
    monkeypatch.syspath_prepend(str(site))
    with families.plugins_undone(start_empty=True):
        families.load_plugins(refresh=True)
        yield


def _spec(**model: Any) -> Any:
    return validate_spec({
        "name": "p", "dataset": {"name": "digits"}, "model": {"family": "tinynet", **model},
        "training": {"epochs": 1, "batch_size": 64},
    })  # fmt: skip


def _recipe(spec: Any, **params: Any) -> dict[str, Any]:
    return make_recipe(spec, {"placement": "bn-act-drop", "dropout": 0.2, "bn_momentum": 0.1, **params}, [64], 10)


def test_an_installed_plugin_is_one_more_family(installed: None) -> None:
    tiny = families.get("tinynet")
    assert tiny.source == "plugin" and tiny.info.slots_doc == "one per hidden Linear (two)"
    assert "tinynet" in domain.names()  # this process validates specs naming it
    model = build_model(_recipe(_spec(width=8)))
    assert layer_order(model) == [
        "Linear(64->8)", "BatchNorm1d(m=0.1)", "ReLU", "Dropout(p=0.2)",
        "Linear(8->8)", "BatchNorm1d(m=0.1)", "ReLU", "Dropout(p=0.2)", "Linear(8->10)",
    ]  # fmt: skip
    assert model(torch.randn(3, 64)).shape == (3, 10)


def test_plugin_knobs_are_validated_and_named(installed: None) -> None:
    with pytest.raises(SpecError) as info:
        _spec(width=0)
    assert info.value.field == "model.width"
    with pytest.raises(SpecError) as info:
        _spec(widht=8)
    assert info.value.field == "model.widht" and "did you mean `width`" in info.value.message


def test_a_built_in_name_cannot_be_taken_and_a_broken_plugin_says_why(installed: None) -> None:
    assert families.get("mlp").source == "builtin"
    with pytest.raises(ValueError, match="family 'broken': its plugin did not load: AttributeError"):
        families.get("broken")
    with pytest.raises(SpecError) as info:
        validate_spec({"name": "p", "dataset": {"name": "digits"}, "model": {"family": "broken"}})
    assert info.value.field == "model.family" and "known: auto, cnn, mlp, resnet, tinynet, vgg" in info.value.message


def test_a_plugin_whose_build_raises_fails_with_its_message(installed: None, data_dir: Path) -> None:
    with pytest.raises(BuildError, match="family 'tinynet': build failed: RuntimeError: tinynet cannot build this"):
        build_model(_recipe(_spec(fail=True)))
    with pytest.raises(BuildError, match="tinynet cannot build this"):  # as a trial
        run_local_trial(_spec(fail=True), {"placement": "act"}, data_dir, device="cpu")


@pytest.mark.parametrize(
    ("lie", "message"),
    [
        (1, "family 'tinynet': its slots\\(\\) says 3 slots but its build used 2 \\(never asked for slot 2\\)"),
        (-1, "family 'tinynet' asked for slot 1, but its slots\\(\\) says 1"),
    ],
)
def test_a_slot_count_that_disagrees_with_the_build_is_an_error(installed: None, lie: int, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build_model(_recipe(_spec(lie=lie)))


def test_plugin_selections_are_checked_against_its_count(installed: None) -> None:
    spec = _spec()  # a plugin's count may depend on the data: checked when the recipe is made
    with pytest.raises(ValueError, match="params.dropout_layers: 'last-3' asks for more than the model's 2 slots"):
        _recipe(spec, dropout_layers="last-3")


def test_a_plugin_trains_in_process(installed: None, data_dir: Path) -> None:
    trial = run_local_trial(_spec(width=32), {"placement": "bn-act", "bn_momentum": 0.1}, data_dir, device="cpu")
    assert trial.recipe["family"] == "tinynet" and trial.recipe["input_shape"] == [64]
    assert trial.result.summary["val_acc"] > 0.3
