"""Build the exact module a recipe describes (the recipe format: ``regsearch/domain/space.py``).

``build_model(recipe)`` looks the family up in the registry (``regsearch.worker.families``:
built-ins and installed plugins alike), validates the knobs with the family's own model, and
calls its ``build`` with a slot factory that turns the recipe's slots into modules (BN /
activation / dropout in each slot's order, with that slot's dropout and momentum). A family
whose build asks for other slots than its ``slots()`` count, or raises, fails with a message
naming it. Version-1 recipes (0.1: mlp and cnn) are upgraded first and build the same module,
layer for layer.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import ValidationError
from torch import nn

from regsearch.domain.space import RECIPE_VERSION, upgrade_recipe
from regsearch.domain.spec import PLACEMENT_TOKENS, parse_placement
from regsearch.domain.validation import field_errors
from regsearch.worker import families
from regsearch.worker.families.base import ACTIVATIONS, SlotFactory

RECIPE_KEYS = ("version", "family", "knobs", "input_shape", "n_classes", "slots")
OPTIONAL_RECIPE_KEYS = ("task",)  # "regression": one output (regsearch.domain.space.make_recipe)
SLOT_KEYS = {"order", "dropout", "bn_momentum", "name"}  # name: optional, the user's layer (auto)


class BuildError(ValueError):
    """A family's ``build`` raised or built other slots than it declared: the trial fails."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_slot(where: str, slot: Any) -> None:
    if not isinstance(slot, dict):
        raise ValueError(f"{where}: a slot is an object with order, dropout and bn_momentum")  # noqa: TRY004
    unknown = set(slot) - SLOT_KEYS
    if unknown:
        raise ValueError(f"{where}.{min(unknown)}: unknown key")
    if "name" in slot and not isinstance(slot["name"], str):
        raise ValueError(f"{where}.name: {slot['name']!r} must be a layer name")
    order = slot.get("order")
    tokens_ok = isinstance(order, list) and all(t in PLACEMENT_TOKENS for t in order)
    try:
        parse_placement("-".join(order) if tokens_ok else "")
    except ValueError as exc:
        raise ValueError(f"{where}.order: {order!r}: {exc}") from None
    dropout, momentum = slot.get("dropout"), slot.get("bn_momentum")
    if "drop" in order and not (_is_number(dropout) and 0 <= dropout < 1):
        raise ValueError(f"{where}.dropout: {dropout!r} must be a number with 0 <= dropout < 1")
    if "drop" not in order and dropout is not None:
        raise ValueError(f"{where}.dropout: must be null in a slot without drop")
    if "bn" in order and not (_is_number(momentum) and 0 < momentum <= 1):
        raise ValueError(f"{where}.bn_momentum: {momentum!r} must be a number with 0 < bn_momentum <= 1")
    if "bn" not in order and momentum is not None:
        raise ValueError(f"{where}.bn_momentum: must be null in a slot without bn")


def _validate_v2(recipe: Any) -> tuple[families.Family, Any]:
    if not isinstance(recipe, dict):
        raise ValueError("recipe: a recipe is a JSON object")  # noqa: TRY004 - one error type
    if recipe.get("version") != RECIPE_VERSION:
        raise ValueError(
            f"recipe.version: {recipe.get('version')!r} is not supported (this worker reads 1 and "
            f"{RECIPE_VERSION})"
        )
    for key in RECIPE_KEYS:
        if key not in recipe:
            raise ValueError(f"recipe.{key}: missing")
    unknown = set(recipe) - {*RECIPE_KEYS, *OPTIONAL_RECIPE_KEYS}
    if unknown:
        raise ValueError(f"recipe.{min(unknown)}: unknown key")
    try:
        family = families.get(recipe["family"])
    except ValueError as exc:
        raise ValueError(f"recipe.family: {exc}") from None
    if not isinstance(recipe["knobs"], dict):
        raise ValueError(f"recipe.knobs: {recipe['knobs']!r} must be an object of the family's knobs")  # noqa: TRY004
    try:
        knobs = family.impl.Knobs.model_validate(recipe["knobs"])
    except ValidationError as exc:
        first = field_errors(exc.errors(include_url=False), model=family.impl.Knobs)[0]
        raise ValueError(f"recipe.knobs.{first['field']}: {first['message']}") from None
    shape = recipe["input_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(d) and d >= 1 for d in shape):
        raise ValueError(f"recipe.input_shape: {shape!r} must be {family.info.input_doc} of positive integers")
    try:
        accepted = family.info.input_shape(knobs, shape)
    except ValueError as exc:
        raise ValueError(f"recipe.input_shape: {exc}") from None
    if list(accepted) != shape:
        raise ValueError(
            f"recipe.input_shape: {shape!r} must be {family.info.input_doc} for the {family.name} family"
        )
    if recipe.get("task") == "regression":  # one output: the predicted target
        if recipe["n_classes"] != 1:
            raise ValueError(f"recipe.n_classes: {recipe['n_classes']!r} must be 1 for a regression recipe")
    elif not _is_int(recipe["n_classes"]) or recipe["n_classes"] < 2:
        raise ValueError(f"recipe.n_classes: {recipe['n_classes']!r} must be an integer >= 2")
    slots = recipe["slots"]
    if not isinstance(slots, list) or not slots:
        raise ValueError("recipe.slots: give at least one slot")
    for i, slot in enumerate(slots):
        _check_slot(f"recipe.slots[{i}]", slot)
    try:
        expected = int(family.impl.slots(knobs, list(shape)))
    except Exception as exc:  # noqa: BLE001 - a plugin's slots() may raise anything
        raise BuildError(f"family {family.name!r}: slots() failed: {type(exc).__name__}: {exc}") from None
    if expected != len(slots):
        raise ValueError(f"recipe.slots: {len(slots)} given, the {family.name} family's knobs make {expected}")
    return family, knobs


def _v1_names(message: str) -> str:
    """A version-2 error in version-1 terms: ``recipe.slots[1]`` -> ``recipe.blocks[1]``."""
    message = re.sub(r"^recipe\.slots", "recipe.blocks", message)
    return re.sub(r"^recipe\.knobs\.(activation|kernel_size)", r"recipe.\1", message)


def validate_recipe(recipe: Any) -> tuple[families.Family, Any]:
    """Raise ValueError naming the first bad key (``recipe.slots[1].dropout: ...``).

    Returns the family and its validated knobs. A version-1 recipe is upgraded first; its
    errors name the version-1 keys (``recipe.blocks[1].order``).
    """
    v1 = isinstance(recipe, dict) and recipe.get("version", 1) == 1 and "slots" not in recipe
    upgraded = upgrade_recipe(recipe)
    try:
        return _validate_v2(upgraded)
    except ValueError as exc:
        if v1 and not isinstance(exc, BuildError):
            raise ValueError(_v1_names(str(exc))) from None
        raise


def build_model(recipe: dict[str, Any]) -> nn.Module:
    """The module ``recipe`` describes (fresh weights from torch's global RNG)."""
    family, knobs = validate_recipe(recipe)
    recipe = upgrade_recipe(recipe)
    activation = getattr(knobs, "activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"recipe.knobs.activation: {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    slot = SlotFactory(family.name, recipe["slots"], activation)
    try:
        model = family.impl.build(knobs, list(recipe["input_shape"]), int(recipe["n_classes"]), slot)
    except Exception as exc:
        raise BuildError(f"family {family.name!r}: build failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise BuildError(f"family {family.name!r}: build returned {type(model).__name__}, not an nn.Module")
    try:
        slot.check_complete()
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    return model


def _describe(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return f"Linear({layer.in_features}->{layer.out_features})"
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        kernel = "x".join(str(k) for k in layer.kernel_size)
        strides = sorted(set(layer.stride))
        stride = "" if strides == [1] else f", s={'x'.join(str(s) for s in layer.stride) if len(strides) > 1 else strides[0]}"
        return f"{type(layer).__name__}({layer.in_channels}->{layer.out_channels}, k={kernel}{stride})"
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return f"{type(layer).__name__}(m={layer.momentum:g})"
    if isinstance(layer, nn.Dropout):
        return f"Dropout(p={layer.p:g})"
    if isinstance(layer, (nn.MaxPool1d, nn.MaxPool2d)):
        return f"{type(layer).__name__}({layer.kernel_size})"
    if isinstance(layer, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return f"{type(layer).__name__}({layer.output_size})"
    return type(layer).__name__


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def layer_order(module: nn.Module) -> list[str]:
    """The leaf layers in forward order: ``["Linear(40->256)", "BatchNorm1d(m=0.1)", ...]``.

    Registration order is forward order for the built-in families (a residual block lists its
    branch, then its shortcut, then ``Add``, then what follows the add); empty containers (a
    slot with nothing before the add) are left out.
    """
    return [
        _describe(m)
        for m in module.modules()
        if not any(True for _ in m.children()) and not isinstance(m, CONTAINERS)
    ]
