"""One trial in this process, no services: what ``regsearch trial SPEC --params JSON`` runs.

The parameters come from a user's command line, so they are checked here with messages that
name the parameter (``params.dropout: 1.5 is out of range: 0 <= dropout < 1``) before any data
is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.space import make_recipe
from regsearch.domain.spec import JobSpec, parse_layer_selection, parse_placement
from regsearch.worker.datasets import input_shape_for, load_dataset_cached
from regsearch.worker.families.auto import NetworkError
from regsearch.worker.models import build_model, layer_order
from regsearch.worker.train import TrainResult, select_device, to_device
from regsearch.worker.trainers import run_trainer

PARAM_KEYS = ("placement", "dropout", "bn_momentum", "dropout_layers", "bn_layers")


@dataclass
class LocalTrial:
    """What a local trial produced: the recipe it trained, its metrics and the module's layers."""

    recipe: dict[str, Any]
    result: TrainResult
    layers: list[str]
    params: dict[str, Any]
    data: dict[str, Any]  # the dataset's split sizes, sample shape and classes


def _number(params: dict[str, Any], key: str) -> float:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"params.{key}: {value!r} is not a finite number")
    return float(value)


def _selection(spec: JobSpec, params: dict[str, Any], key: str) -> str:
    """The given layer selection, else the spec's when it fixes one, else ``all``."""
    choices = spec.space.choices(key)
    value = params.get(key, choices[0] if len(choices) == 1 else "all")
    try:
        kind, k = parse_layer_selection(value)
    except ValueError as exc:
        raise ValueError(f"params.{key}: {exc}") from None
    n_slots = spec.model.n_slots()  # None: a plugin's count; make_recipe checks it with the data
    if n_slots is not None and kind == "last" and k > n_slots:
        raise ValueError(f"params.{key}: {value!r} asks for more than the model's {n_slots} slots")
    return str(value)


def validate_params(spec: JobSpec, params: Any) -> dict[str, Any]:
    """Check one configuration against ``spec``; returns it complete (layer selections filled)."""
    if not isinstance(params, dict):  # ValueError like every other bad parameter: the CLI exits 2
        raise ValueError(  # noqa: TRY004
            "params: give a JSON object such as "
            '{"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1}'
        )
    unknown = [k for k in params if k not in PARAM_KEYS]
    if unknown:
        raise ValueError(f"params.{unknown[0]}: unknown parameter (use {', '.join(PARAM_KEYS)})")
    if "placement" not in params:
        raise ValueError('params.placement: missing (e.g. "bn-act-drop")')
    try:
        tokens = parse_placement(params["placement"])
    except ValueError as exc:
        raise ValueError(f"params.placement: {exc}") from None
    placement = params["placement"]
    clean: dict[str, Any] = {"placement": placement}
    for token, value_key, layers_key in (
        ("drop", "dropout", "dropout_layers"),
        ("bn", "bn_momentum", "bn_layers"),
    ):
        if token not in tokens:
            for key in (value_key, layers_key):
                if key in params:
                    raise ValueError(
                        f"params.{key}: placement {placement!r} has no {token!r}; leave {key} out"
                    )
            continue
        if value_key not in params:
            raise ValueError(
                f"params.{value_key}: required because placement {placement!r} has {token!r}"
            )
        value = _number(params, value_key)
        if token == "drop" and not 0 <= value < 1:
            raise ValueError(f"params.dropout: {value!r} is out of range: 0 <= dropout < 1")
        if token == "bn" and not 0 < value <= 1:
            raise ValueError(
                f"params.bn_momentum: {value!r} is out of range: 0 < bn_momentum <= 1 "
                "(PyTorch convention)"
            )
        clean[value_key] = value
        clean[layers_key] = _selection(spec, params, layers_key)
    return clean


def run_local_trial(
    spec: JobSpec,
    params: dict[str, Any],
    data_dir: Path,
    *,
    device: str = "auto",
    on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
    threads: int | None = None,
) -> LocalTrial:
    """Validate ``params``, load the dataset (cached), build the recipe's module and train it.

    ``threads``: torch's intra-op threads for this process (None: torch's default, every core);
    beside other trial processes each takes its share (``regsearch.cli.cores``)."""
    clean = validate_params(spec, params)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    target = select_device(device)
    splits = load_dataset_cached(spec.dataset, Path(data_dir), spec.task)
    input_shape = input_shape_for(splits, spec.model)
    try:
        recipe = make_recipe(spec, clean, input_shape, splits.n_classes)
        layers = layer_order(build_model(recipe))
    except ValueError as exc:  # auto's build wraps the NetworkError of its make: raise that one, plain
        if not isinstance(exc, NetworkError) and isinstance(exc.__cause__, NetworkError):
            raise exc.__cause__ from None
        raise
    result = run_trainer(spec, clean, recipe, to_device(splits, target), on_epoch=on_epoch)
    return LocalTrial(recipe=recipe, result=result, layers=layers, params=clean, data=splits.summary())
