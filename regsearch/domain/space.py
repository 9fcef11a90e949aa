"""The search space: parameters suggested define-by-run, and the recipe they describe.

Parameters are conditional: ``dropout`` is suggested only when the placement has ``drop`` and
``bn_momentum`` only when it has ``bn``; ``dropout_layers`` / ``bn_layers`` likewise. A fixed
entry in the spec is not suggested at all (so Optuna does not search it) but still appears in
the parameters, so a trial's parameters always describe the whole configuration.

A *recipe* is plain JSON that rebuilds the exact module (``regsearch.worker.models.build_model``)::

    {"version": 1, "family": "mlp", "input_shape": [40], "n_classes": 10,
     "activation": "relu", "kernel_size": 3,
     "blocks": [{"width": 256, "order": ["bn", "act", "drop"], "dropout": 0.3, "bn_momentum": 0.1}]}

``order`` is the block's own order after its layer: the placement with ``bn`` / ``drop``
removed from the blocks that ``bn_layers`` / ``dropout_layers`` leave out. ``input_shape`` is
``[features]`` for an MLP, ``[channels, length]`` (Conv1d) or ``[channels, h, w]`` (Conv2d) for
a CNN. ``dropout`` is ``null`` in a block with no ``drop``; ``bn_momentum`` ``null`` with no ``bn``.
"""

from __future__ import annotations

from typing import Any, Protocol

from regsearch.domain.spec import FloatRange, JobSpec, parse_placement, selected_layers

RECIPE_VERSION = 1


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
    return params


def make_recipe(spec: JobSpec, params: dict[str, Any], input_shape: list[int], n_classes: int) -> dict[str, Any]:
    """The JSON recipe for ``params`` on data of ``input_shape`` with ``n_classes`` labels."""
    tokens = parse_placement(params["placement"])
    widths = spec.model.widths
    n_blocks = len(widths)
    with_bn = set(selected_layers(params.get("bn_layers", "all"), n_blocks)) if "bn" in tokens else set()
    with_drop = set(selected_layers(params.get("dropout_layers", "all"), n_blocks)) if "drop" in tokens else set()
    blocks = []
    for index, width in enumerate(widths):
        order = [
            t for t in tokens if t == "act" or (t == "bn" and index in with_bn) or (t == "drop" and index in with_drop)
        ]
        blocks.append(
            {
                "width": int(width),
                "order": order,
                "dropout": float(params["dropout"]) if "drop" in order else None,
                "bn_momentum": float(params["bn_momentum"]) if "bn" in order else None,
            }
        )
    return {
        "version": RECIPE_VERSION,
        "family": spec.model.family,
        "input_shape": [int(d) for d in input_shape],
        "n_classes": int(n_classes),
        "activation": spec.model.activation,
        "kernel_size": spec.model.kernel_size,
        "blocks": blocks,
    }


def params_key(params: dict[str, Any]) -> str:
    """A stable text key for a configuration (for grouping and display)."""
    parts = [params["placement"]]
    if "dropout" in params:
        parts.append(f"drop={params['dropout']:.3g}@{params.get('dropout_layers', 'all')}")
    if "bn_momentum" in params:
        parts.append(f"bn_m={params['bn_momentum']:.3g}@{params.get('bn_layers', 'all')}")
    return " ".join(parts)
