"""The built module is what the recipe says: order, presence, momentum, dropout, eval mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from regsearch.domain.space import make_recipe, upgrade_recipe
from regsearch.domain.spec import JobSpec, all_placements
from regsearch.worker.models import build_model, layer_order

WIDTHS = [12, 10, 8]
# family, input shape, what build_model must use for the block layer and its BN
FAMILIES = {
    "mlp": ([20], "Linear", nn.BatchNorm1d),
    "cnn1d": ([2, 9], "Conv1d", nn.BatchNorm1d),
    "cnn2d": ([1, 5, 6], "Conv2d", nn.BatchNorm2d),
}
# a layer selection and the blocks (0-based, of 3) it picks, written out independently
SELECTIONS = {"all": [0, 1, 2], "none": [], "last": [2], "last-2": [1, 2]}


def _recipe(
    family: str, placement: str, selection: str = "all", dropout: float = 0.3, momentum: float = 0.2
) -> dict[str, Any]:
    model: dict[str, Any] = (
        {"family": "mlp", "hidden": WIDTHS}
        if family == "mlp"
        else {"family": "cnn", "channels": WIDTHS}
    )
    spec = JobSpec(name="t", dataset={"name": "digits"}, model=model)
    params: dict[str, Any] = {"placement": placement}
    if "drop" in placement:
        params.update(dropout=dropout, dropout_layers=selection)
    if "bn" in placement:
        params.update(bn_momentum=momentum, bn_layers=selection)
    return make_recipe(spec, params, FAMILIES[family][0], n_classes=4)


def _expected_layers(family: str, placement: str, selection: str) -> list[str]:
    shape, layer, bn = FAMILIES[family]
    expected = []
    width_in = shape[0]
    kernel = "3" if family == "cnn1d" else "3x3"
    for index, width in enumerate(WIDTHS):
        expected.append(
            f"Linear({width_in}->{width})"
            if family == "mlp"
            else f"{layer}({width_in}->{width}, k={kernel})"
        )
        for token in placement.split("-"):
            if token == "act":
                expected.append("ReLU")
            elif token == "bn" and index in SELECTIONS[selection]:
                expected.append(f"{bn.__name__}(m=0.2)")
            elif token == "drop" and index in SELECTIONS[selection]:
                expected.append("Dropout(p=0.3)")
        width_in = width
    if family != "mlp":
        expected.append("Flatten")
    spatial = 1
    for size in shape[1:]:
        spatial *= size
    expected.append(f"Linear({WIDTHS[-1] * spatial}->4)")
    return expected


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("selection", list(SELECTIONS))
@pytest.mark.parametrize("placement", all_placements())
def test_every_placement_builds_the_described_module(
    family: str, selection: str, placement: str
) -> None:
    model = build_model(_recipe(family, placement, selection))
    assert layer_order(model) == _expected_layers(family, placement, selection)
    _, _, bn_class = FAMILIES[family]
    for index, block in enumerate(
        m for name, m in model.named_children() if name.startswith("block")
    ):
        names = [name for name, _ in block.named_children()]
        assert names[0] == ("linear" if family == "mlp" else "conv")
        wanted = [t for t in placement.split("-") if t == "act" or index in SELECTIONS[selection]]
        assert names[1:] == wanted  # the block's own order, BN/dropout only where selected
        if "bn" in wanted:
            assert type(block.bn) is bn_class and block.bn.momentum == 0.2
        if "drop" in wanted:
            assert isinstance(block.drop, nn.Dropout) and block.drop.p == 0.3
    x = torch.randn(5, *FAMILIES[family][0])
    assert model(x).shape == (5, 4)


def _bn_input(bn: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = bn.register_forward_hook(
        lambda module, args, out: seen.append(args[0].detach().clone())
    )
    model(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("placement", ["bn-act-drop", "drop-bn-act", "act-drop-bn"])
def test_eval_mode_uses_running_statistics_and_no_dropout(family: str, placement: str) -> None:
    torch.manual_seed(0)
    model = build_model(_recipe(family, placement, dropout=0.5, momentum=0.3))
    x = torch.randn(16, *FAMILIES[family][0])
    bn = model.block2.bn
    before = bn.running_mean.clone()
    model.train()
    batch_input = _bn_input(bn, model, x)
    dims = [0] + list(range(2, batch_input.ndim))  # per channel: over the batch and positions
    expected = (1 - 0.3) * before + 0.3 * batch_input.mean(dim=dims)
    torch.testing.assert_close(bn.running_mean, expected)  # PyTorch momentum convention

    model.eval()
    after_train = bn.running_mean.clone()
    with torch.no_grad():
        first, second = model(x), model(x)
        one = model(x[3:4])
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # dropout is off
    torch.testing.assert_close(one[0], first[3], rtol=1e-5, atol=1e-6)  # no batch statistics
    torch.testing.assert_close(bn.running_mean, after_train, rtol=0, atol=0)  # frozen in eval


def test_dropout_is_active_in_train_mode() -> None:
    torch.manual_seed(0)
    model = build_model(_recipe("mlp", "act-drop", dropout=0.5)).train()
    x = torch.randn(8, 20)
    assert not torch.equal(model(x), model(x))


# Verbatim what 0.1 stored (regsearch trial --json on mnist1d, version 1): still rebuilds.
V1_RECIPE = json.loads(
    """{"version": 1, "family": "mlp", "input_shape": [40], "n_classes": 10, "activation": "gelu",
    "kernel_size": 3, "blocks": [
    {"width": 256, "order": ["bn", "act", "drop"], "dropout": 0.3, "bn_momentum": 0.1},
    {"width": 64, "order": ["act"], "dropout": null, "bn_momentum": null}]}"""
)
V1_CNN_RECIPE = json.loads(
    """{"version": 1, "family": "cnn", "input_shape": [1, 8, 8], "n_classes": 10,
    "activation": "relu", "kernel_size": 3, "blocks": [
    {"width": 8, "order": ["drop", "bn", "act"], "dropout": 0.2, "bn_momentum": 0.05},
    {"width": 4, "order": ["act", "bn"], "dropout": null, "bn_momentum": 0.05}]}"""
)


def test_a_stored_version_1_recipe_rebuilds_the_same_module() -> None:
    assert layer_order(build_model(V1_RECIPE)) == [
        "Linear(40->256)", "BatchNorm1d(m=0.1)", "GELU", "Dropout(p=0.3)",
        "Linear(256->64)", "GELU", "Linear(64->10)",
    ]  # fmt: skip
    # the same parameter names as 0.1's nn.Sequential, so its weights load
    assert list(build_model(V1_RECIPE).state_dict()) == [
        "block1.linear.weight", "block1.linear.bias", "block1.bn.weight", "block1.bn.bias",
        "block1.bn.running_mean", "block1.bn.running_var", "block1.bn.num_batches_tracked",
        "block2.linear.weight", "block2.linear.bias", "head.weight", "head.bias",
    ]  # fmt: skip
    cnn = build_model(V1_CNN_RECIPE)
    assert layer_order(cnn) == [
        "Conv2d(1->8, k=3x3)", "Dropout(p=0.2)", "BatchNorm2d(m=0.05)", "ReLU",
        "Conv2d(8->4, k=3x3)", "ReLU", "BatchNorm2d(m=0.05)", "Flatten", "Linear(256->10)",
    ]  # fmt: skip
    assert cnn(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    # and the upgrade is the recipe this version writes for the same configuration
    spec = JobSpec(name="t", dataset={"name": "digits"}, model={"family": "cnn", "channels": [8, 4]})
    params = {"placement": "act-bn", "bn_momentum": 0.05, "bn_layers": "all"}
    mine = make_recipe(spec, params, [1, 8, 8], 10)
    assert upgrade_recipe(V1_CNN_RECIPE)["knobs"] == mine["knobs"]
    assert upgrade_recipe(V1_CNN_RECIPE)["slots"][1] == mine["slots"][1]


def test_layer_order_example() -> None:
    recipe = {
        "version": 1,
        "family": "mlp",
        "input_shape": [40],
        "n_classes": 10,
        "activation": "gelu",
        "blocks": [
            {"width": 256, "order": ["bn", "act", "drop"], "dropout": 0.3, "bn_momentum": 0.1},
            {"width": 64, "order": ["act"], "dropout": None, "bn_momentum": None},
        ],
    }
    assert layer_order(build_model(recipe)) == [
        "Linear(40->256)",
        "BatchNorm1d(m=0.1)",
        "GELU",
        "Dropout(p=0.3)",
        "Linear(256->64)",
        "GELU",
        "Linear(64->10)",
    ]


@pytest.mark.parametrize(
    ("activation", "cls"),
    [
        ("relu", nn.ReLU),
        ("gelu", nn.GELU),
        ("silu", nn.SiLU),
        ("tanh", nn.Tanh),
        ("leaky_relu", nn.LeakyReLU),
        ("elu", nn.ELU),
    ],
)
def test_activations(activation: str, cls: type[nn.Module]) -> None:
    recipe = _recipe("mlp", "act")
    recipe["knobs"]["activation"] = activation
    assert isinstance(build_model(recipe).block1.act, cls)


def test_even_kernels_size_the_head_correctly() -> None:
    recipe = _recipe("cnn1d", "bn-act")
    recipe["knobs"]["kernel_size"] = 4  # padding 2 grows the length by one per block: 9 -> 12
    model = build_model(recipe)
    assert model.head.in_features == 8 * 12
    assert model(torch.randn(3, 2, 9)).shape == (3, 4)


def _set(recipe: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = recipe
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return recipe


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("family", "rnn", "recipe.family: unknown family 'rnn' \\(known: auto, cnn, mlp, resnet, vgg"),
        ("input_shape", [20, 3], "recipe.input_shape"),
        ("n_classes", 1, "recipe.n_classes"),
        ("knobs.activation", "swish", "recipe.knobs.activation"),
        ("knobs.hidden", [12, 10], "recipe.slots: 3 given, the mlp family's knobs make 2"),
        ("knobs.width", 3, "recipe.knobs.width: unknown field"),
        ("knobs", KeyError, "recipe.knobs: missing"),
        ("version", 3, "recipe.version"),
        ("extra", 1, "recipe.extra: unknown key"),
        ("slots", [], "recipe.slots"),
        ("slots.1.order", ["bn", "drop"], r"recipe.slots\[1\].order"),
        ("slots.1.order", ["act", "act"], r"recipe.slots\[1\].order"),
        ("slots.1.order", ["bn-act"], r"recipe.slots\[1\].order"),
        ("slots.2.dropout", 1.0, r"recipe.slots\[2\].dropout"),
        ("slots.2.bn_momentum", 0.0, r"recipe.slots\[2\].bn_momentum"),
        ("slots.2.bn_momentum", True, r"recipe.slots\[2\].bn_momentum"),
        ("slots.0.width", 1, r"recipe.slots\[0\].width: unknown key"),
        ("n_classes", KeyError, "recipe.n_classes: missing"),
    ],
)
def test_invalid_recipes_name_the_key(path: str, value: Any, message: str) -> None:
    recipe = _set(_recipe("mlp", "bn-act-drop"), path, value)
    with pytest.raises(ValueError, match=f"^{message}"):
        build_model(recipe)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("family", "rnn", "recipe.family"),
        ("input_shape", [20, 3], "recipe.input_shape"),
        ("n_classes", 1, "recipe.n_classes"),
        ("activation", "swish", "recipe.activation"),
        ("version", 3, "recipe.version"),
        ("blocks", [], "recipe.blocks"),
        ("blocks.0.width", 0, r"recipe.blocks\[0\].width"),
        ("blocks.1.order", ["bn", "drop"], r"recipe.blocks\[1\].order"),
        ("blocks.1.order", ["act", "act"], r"recipe.blocks\[1\].order"),
        ("blocks.1.order", ["bn-act"], r"recipe.blocks\[1\].order"),
        ("blocks.0.dropout", 1.0, r"recipe.blocks\[0\].dropout"),
        ("blocks.0.bn_momentum", 0.0, r"recipe.blocks\[0\].bn_momentum"),
        ("blocks.0.bn_momentum", True, r"recipe.blocks\[0\].bn_momentum"),
        ("blocks.0.extra", 1, r"recipe.blocks\[0\].extra"),
        ("n_classes", KeyError, "recipe.n_classes: missing"),
    ],
)
def test_invalid_version_1_recipes_name_the_version_1_key(path: str, value: Any, message: str) -> None:
    recipe = _set(json.loads(json.dumps(V1_RECIPE)), path, value)
    with pytest.raises(ValueError, match=f"^{message}"):
        build_model(recipe)


def test_dropout_on_a_block_without_drop_is_refused() -> None:
    recipe = _recipe("mlp", "bn-act")
    recipe["slots"][0]["dropout"] = 0.2
    with pytest.raises(ValueError, match=r"recipe.slots\[0\].dropout: must be null"):
        build_model(recipe)
