"""Build the exact module a recipe describes (the recipe format: ``regsearch/domain/space.py``).

The module is an ``nn.Sequential`` of named blocks, so it reads like the recipe::

    block1: Sequential(linear, bn, act, drop)   # the block's own ``order`` after its layer
    ...
    head:   Linear(width -> n_classes)           # a cnn has ``flatten`` before it

No pooling and ``padding = kernel_size // 2`` keep a cnn's length/size (odd kernels), so the
only thing a placement changes is the order and presence of BN, activation and dropout.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from torch import nn

from regsearch.domain.space import RECIPE_VERSION
from regsearch.domain.spec import PLACEMENT_TOKENS, parse_placement

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_recipe(recipe: Any) -> None:
    """Raise ValueError naming the first bad key (``recipe.blocks[1].dropout: ...``)."""
    if not isinstance(recipe, dict):
        raise ValueError("recipe: a recipe is a JSON object")  # noqa: TRY004 - one error type
    for key in ("family", "input_shape", "n_classes", "activation", "blocks"):
        if key not in recipe:
            raise ValueError(f"recipe.{key}: missing")
    if recipe.get("version", RECIPE_VERSION) != RECIPE_VERSION:
        raise ValueError(
            f"recipe.version: {recipe['version']!r} is not supported (this worker reads "
            f"{RECIPE_VERSION})"
        )
    family = recipe["family"]
    if family not in ("mlp", "cnn"):
        raise ValueError(f"recipe.family: {family!r} is not mlp or cnn")
    shape = recipe["input_shape"]
    dims = (1,) if family == "mlp" else (2, 3)
    if (
        not isinstance(shape, list)
        or len(shape) not in dims
        or not all(_is_int(d) and d >= 1 for d in shape)
    ):
        expected = (
            "[features]" if family == "mlp" else "[channels, length] or [channels, height, width]"
        )
        raise ValueError(f"recipe.input_shape: {shape!r} must be {expected} of positive integers")
    if not _is_int(recipe["n_classes"]) or recipe["n_classes"] < 2:
        raise ValueError(f"recipe.n_classes: {recipe['n_classes']!r} must be an integer >= 2")
    if recipe["activation"] not in ACTIVATIONS:
        raise ValueError(
            f"recipe.activation: {recipe['activation']!r} is not one of {', '.join(ACTIVATIONS)}"
        )
    kernel = recipe.get("kernel_size", 3)
    if family == "cnn" and (not _is_int(kernel) or kernel < 1):
        raise ValueError(f"recipe.kernel_size: {kernel!r} must be a positive integer")
    blocks = recipe["blocks"]
    if not isinstance(blocks, list) or not blocks:
        raise ValueError("recipe.blocks: give at least one block")
    for i, block in enumerate(blocks):
        where = f"recipe.blocks[{i}]"
        if not isinstance(block, dict):
            raise ValueError(f"{where}: a block is an object with width and order")  # noqa: TRY004
        unknown = set(block) - {"width", "order", "dropout", "bn_momentum"}
        if unknown:
            raise ValueError(f"{where}.{min(unknown)}: unknown key")
        if not _is_int(block.get("width")) or block["width"] < 1:
            raise ValueError(f"{where}.width: {block.get('width')!r} must be a positive integer")
        order = block.get("order")
        tokens_ok = isinstance(order, list) and all(t in PLACEMENT_TOKENS for t in order)
        try:
            parse_placement("-".join(order) if tokens_ok else "")
        except ValueError as exc:
            raise ValueError(f"{where}.order: {order!r}: {exc}") from None
        dropout, momentum = block.get("dropout"), block.get("bn_momentum")
        if "drop" in order and not (_is_number(dropout) and 0 <= dropout < 1):
            raise ValueError(f"{where}.dropout: {dropout!r} must be a number with 0 <= dropout < 1")
        if "drop" not in order and dropout is not None:
            raise ValueError(f"{where}.dropout: must be null in a block without drop")
        if "bn" in order and not (_is_number(momentum) and 0 < momentum <= 1):
            raise ValueError(
                f"{where}.bn_momentum: {momentum!r} must be a number with 0 < bn_momentum <= 1"
            )
        if "bn" not in order and momentum is not None:
            raise ValueError(f"{where}.bn_momentum: must be null in a block without bn")


def build_model(recipe: dict[str, Any]) -> nn.Sequential:
    """The module ``recipe`` describes (fresh weights from torch's global RNG)."""
    validate_recipe(recipe)
    family = recipe["family"]
    shape: list[int] = list(recipe["input_shape"])
    activation = ACTIVATIONS[recipe["activation"]]
    kernel = int(recipe.get("kernel_size", 3))
    spatial = len(shape) - 1  # 1 -> Conv1d/BatchNorm1d, 2 -> Conv2d/BatchNorm2d (cnn only)
    conv = nn.Conv1d if spatial == 1 else nn.Conv2d
    batch_norm = nn.BatchNorm2d if family == "cnn" and spatial == 2 else nn.BatchNorm1d

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    features = shape[0]  # mlp: input features; cnn: input channels
    sizes = shape[1:]  # cnn: spatial sizes, tracked so the head knows its input width
    for index, block in enumerate(recipe["blocks"], start=1):
        width = int(block["width"])
        parts: OrderedDict[str, nn.Module] = OrderedDict()
        if family == "mlp":
            parts["linear"] = nn.Linear(features, width)
        else:
            parts["conv"] = conv(features, width, kernel_size=kernel, padding=kernel // 2)
            sizes = [s + 2 * (kernel // 2) - kernel + 1 for s in sizes]  # = s for odd kernels
        for token in block["order"]:
            if token == "bn":
                parts["bn"] = batch_norm(width, momentum=float(block["bn_momentum"]))
            elif token == "act":
                parts["act"] = activation()
            else:
                parts["drop"] = nn.Dropout(float(block["dropout"]))
        layers[f"block{index}"] = nn.Sequential(parts)
        features = width
    if family == "cnn":
        layers["flatten"] = nn.Flatten()
        features *= math.prod(sizes)
    layers["head"] = nn.Linear(features, int(recipe["n_classes"]))
    return nn.Sequential(layers)


def _describe(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return f"Linear({layer.in_features}->{layer.out_features})"
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        kernel = "x".join(str(k) for k in layer.kernel_size)
        return f"{type(layer).__name__}({layer.in_channels}->{layer.out_channels}, k={kernel})"
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return f"{type(layer).__name__}(m={layer.momentum:g})"
    if isinstance(layer, nn.Dropout):
        return f"Dropout(p={layer.p:g})"
    return type(layer).__name__


def layer_order(module: nn.Module) -> list[str]:
    """The leaf layers in forward order: ``["Linear(40->256)", "BatchNorm1d(m=0.1)", ...]``."""
    # registration order is forward order for the nested Sequentials that build_model makes
    return [_describe(m) for m in module.modules() if not any(True for _ in m.children())]
