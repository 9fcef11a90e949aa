"""The search space: parameters suggested define-by-run, and the recipe they describe.

Parameters are conditional: ``dropout`` is suggested only when the placement has ``drop`` and
``bn_momentum`` only when it has ``bn``; ``dropout_layers`` / ``bn_layers`` likewise. A fixed
entry in the spec is not suggested at all (so Optuna does not search it) but still appears in
the parameters, so a trial's parameters always describe the whole configuration.

A *recipe* is plain JSON that rebuilds the exact module (``regsearch.worker.models.build_model``)::

    {"version": 2, "family": "resnet", "knobs": {"depth": 8, "width": 16, "activation": "relu"},
     "input_shape": [3, 32, 32], "n_classes": 10,
     "slots": [{"order": ["bn", "act", "drop"], "dropout": 0.3, "bn_momentum": 0.1}, ...]}

``knobs`` are the family's knobs with their defaults filled in; ``slots`` has one entry per slot
(the family's slot count, in the family's slot order: ``last-K`` is the last K entries). A slot's
``order`` is the placement with ``bn`` / ``drop`` removed where ``bn_layers`` / ``dropout_layers``
leave that slot out; ``dropout`` is ``null`` in a slot without ``drop``, ``bn_momentum`` ``null``
without ``bn``. ``input_shape`` is the family's (``[features]`` for an mlp, ``[channels, length]``
or ``[channels, h, w]`` for the conv families).

Version 1 (0.1, mlp and cnn only) had the knobs at the top level and ``blocks`` with each hidden
layer's ``width``::

    {"version": 1, "family": "mlp", "input_shape": [40], "n_classes": 10,
     "activation": "relu", "kernel_size": 3,
     "blocks": [{"width": 256, "order": ["bn", "act", "drop"], "dropout": 0.3, "bn_momentum": 0.1}]}

:func:`upgrade_recipe` turns it into version 2 (the same module, layer for layer).
"""

from __future__ import annotations

from typing import Any, Protocol

from regsearch.domain.spec import (
    FloatRange,
    JobSpec,
    parse_layer_selection,
    parse_placement,
    selected_layers,
)

RECIPE_VERSION = 2


class Suggester(Protocol):
    """The part of ``optuna.trial.Trial`` the space needs (keeps this module free of Optuna)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> float: ...


def _suggest_float(trial: Suggester, name: str, value: Any) -> float:
    if isinstance(value, FloatRange):
        if value.low == value.high:
            return float(value.low)
        return float(trial.suggest_float(name, value.low, value.high, step=value.step, log=value.log))
    if isinstance(value, list):
        return float(value[0]) if len(value) == 1 else float(trial.suggest_categorical(name, value))
    return float(value)


def _suggest_choice(trial: Suggester, name: str, choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else str(trial.suggest_categorical(name, choices))


def suggest_params(trial: Suggester, spec: JobSpec) -> dict[str, Any]:
    """Ask ``trial`` for one configuration of ``spec.space``; returns the full parameter dict."""
    space = spec.space
    placement = _suggest_choice(trial, "placement", space.choices("placement"))
    tokens = parse_placement(placement)
    params: dict[str, Any] = {"placement": placement}
    if "drop" in tokens:
        params["dropout"] = _suggest_float(trial, "dropout", space.dropout)
        params["dropout_layers"] = _suggest_choice(trial, "dropout_layers", space.choices("dropout_layers"))
    if "bn" in tokens:
        params["bn_momentum"] = _suggest_float(trial, "bn_momentum", space.bn_momentum)
        params["bn_layers"] = _suggest_choice(trial, "bn_layers", space.choices("bn_layers"))
    for name in OPTIMIZER_PARAMS:  # every placement at its own rate: searched with the rest
        value = getattr(space, name)
        if value is not None:
            params[name] = _suggest_float(trial, name, value)
    return params


# Optimizer settings the space may search (space.lr, space.weight_decay); a trial's parameters
# carry them when the space names them, and they override training.lr / training.weight_decay.
OPTIMIZER_PARAMS = ("lr", "weight_decay")


def training_for(spec: JobSpec, params: dict[str, Any]) -> JobSpec:
    """``spec`` with the trial's searched optimizer settings in ``training`` (the spec itself when
    the trial has none): what every trainer of the trial reads its rate from."""
    update = {name: float(params[name]) for name in OPTIMIZER_PARAMS if params.get(name) is not None}
    if not update:
        return spec
    return spec.model_copy(update={"training": spec.training.model_copy(update=update)})


def make_recipe(spec: JobSpec, params: dict[str, Any], input_shape: list[int], n_classes: int) -> dict[str, Any]:
    """The JSON recipe for ``params`` on data of ``input_shape`` with ``n_classes`` labels.

    ``input_shape`` is the model's (``regsearch.worker.datasets.input_shape_for``). A ``last-K``
    selection asking for more slots than the model has is a ValueError naming the parameter.
    """
    tokens = parse_placement(params["placement"])
    n_slots = spec.model.n_slots(input_shape) or 0
    chosen = {}
    for token, key in (("bn", "bn_layers"), ("drop", "dropout_layers")):
        selection = params.get(key, "all")
        kind, k = parse_layer_selection(selection)
        if token in tokens and kind == "last" and k > n_slots:
            raise ValueError(f"params.{key}: {selection!r} asks for more than the model's {n_slots} slots")
        chosen[token] = set(selected_layers(selection, n_slots)) if token in tokens else set()
    slots = []
    for index in range(n_slots):
        order = [t for t in tokens if t == "act" or index in chosen[t]]
        slots.append(
            {
                "order": order,
                "dropout": float(params["dropout"]) if "drop" in order else None,
                "bn_momentum": float(params["bn_momentum"]) if "bn" in order else None,
            }
        )
    namer = spec.model.info.slot_names  # the family's slot names, if any
    if namer is not None:
        for slot, name in zip(slots, namer(spec.model.knobs, input_shape), strict=True):
            slot["name"] = name
    recipe = {
        "version": RECIPE_VERSION,
        "family": spec.model.family,
        "knobs": spec.model.knobs.model_dump(mode="json"),
        "input_shape": [int(d) for d in input_shape],
        "n_classes": int(n_classes),
        "slots": slots,
    }
    if spec.task == "regression":
        recipe["task"] = "regression"  # one output (n_classes 1): the predicted target
    return recipe


V1_FAMILIES = {"mlp": "hidden", "cnn": "channels"}  # 0.1's families and the knob of their widths


def upgrade_recipe(recipe: Any) -> Any:
    """A version-1 recipe as version 2 (anything else is returned as it is).

    Only the version-1 shape is checked here (``recipe.blocks[0].width``: ...); the rest of the
    checks are version 2's (``regsearch.worker.models.validate_recipe``, which names the
    version-1 keys in its errors for such a recipe).
    """
    if not isinstance(recipe, dict) or recipe.get("version", 1) != 1 or "slots" in recipe:
        return recipe
    family = recipe.get("family")
    if family not in V1_FAMILIES:
        raise ValueError(f"recipe.family: {family!r} is not mlp or cnn (a version-1 recipe)")
    for key in ("input_shape", "n_classes", "activation", "blocks"):
        if key not in recipe:
            raise ValueError(f"recipe.{key}: missing")
    blocks = recipe["blocks"]
    if not isinstance(blocks, list) or not blocks:
        raise ValueError("recipe.blocks: give at least one block")
    slots, widths = [], []
    for i, block in enumerate(blocks):
        where = f"recipe.blocks[{i}]"
        if not isinstance(block, dict):
            raise ValueError(f"{where}: a block is an object with width and order")  # noqa: TRY004
        unknown = set(block) - {"width", "order", "dropout", "bn_momentum"}
        if unknown:
            raise ValueError(f"{where}.{min(unknown)}: unknown key")
        width = block.get("width")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"{where}.width: {width!r} must be a positive integer")
        widths.append(width)
        slots.append({k: v for k, v in block.items() if k != "width"})
    knobs: dict[str, Any] = {V1_FAMILIES[family]: widths, "activation": recipe["activation"]}
    if family == "cnn":
        knobs["kernel_size"] = recipe.get("kernel_size", 3)
    return {
        "version": RECIPE_VERSION,
        "family": family,
        "knobs": knobs,
        "input_shape": recipe["input_shape"],
        "n_classes": recipe["n_classes"],
        "slots": slots,
    }


def params_key(params: dict[str, Any]) -> str:
    """A stable text key for a configuration (for grouping and display)."""
    parts = [params["placement"]]
    if "dropout" in params:
        parts.append(f"drop={params['dropout']:.3g}@{params.get('dropout_layers', 'all')}")
    if "bn_momentum" in params:
        parts.append(f"bn_m={params['bn_momentum']:.3g}@{params.get('bn_layers', 'all')}")
    for name in OPTIMIZER_PARAMS:
        if name in params:
            parts.append(f"{name}={params[name]:.3g}")
    return " ".join(parts)


# The parameters that decide a trial's module structure (with the job's family and knobs): the
# members of a pack share them; dropout rates and BN momenta vary within a pack.
STRUCTURE_PARAMS = ("placement", "dropout_layers", "bn_layers")


def structure_of(params: dict[str, Any]) -> dict[str, Any]:
    """The structure part of a configuration: what trials of one packed model have in common."""
    return {name: params[name] for name in STRUCTURE_PARAMS if name in params}
