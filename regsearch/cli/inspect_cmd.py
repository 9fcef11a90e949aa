"""``regsearch inspect SPEC.yaml``: the slots the spec's model has, before anything is submitted.

The dataset is loaded for its sample shape, and the worker imported lazily, as ``regsearch
trial`` does. For ``auto`` the slots are found by tracing the network (with the chain each layer
has today); any other family's model is built and each slot named by the weight layer before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from regsearch.cli.common import app, cli_settings, console, fail

MAY_CHANGE = "bn, dropout, order"


def _kind(layer: Any) -> str:
    """``Linear 40->256`` / ``Conv2d 1->32 k3x3``: a weight layer in a few characters."""
    if hasattr(layer, "in_features"):
        return f"{type(layer).__name__} {layer.in_features}->{layer.out_features}"
    if hasattr(layer, "in_channels"):
        kernel = "x".join(str(k) for k in getattr(layer, "kernel_size", ()))
        return f"{type(layer).__name__} {layer.in_channels}->{layer.out_channels} k{kernel}"
    return type(layer).__name__


def built_slots(job_spec: Any, shape: list[int], n_classes: int) -> list[list[str]]:
    """Rows ``[slot, layer, kind]`` of a built-in or plugin family: the model built for the
    placement ``bn-act``, each slot named by the weight layer before it (the recipe's own slot
    name where the family gives one)."""
    from torch import nn

    from regsearch.domain.space import make_recipe
    from regsearch.worker.families.base import SlotFactory
    from regsearch.worker.models import validate_recipe

    # BN first: a slot's first op then sits right after its layer, even where the family splits the
    # slot around a residual add (whose activation comes after the shortcut's layer)
    recipe = make_recipe(job_spec, {"placement": "bn-act", "bn_momentum": 0.1, "bn_layers": "all"}, shape, n_classes)
    family, knobs = validate_recipe(recipe)
    factory = SlotFactory(family.name, recipe["slots"], getattr(knobs, "activation", "relu"))
    firsts: dict[int, int] = {}  # id of each slot's first module -> its index

    def slot(index: int, features: int, spatial_dims: int) -> Any:
        made = factory(index, features, spatial_dims)
        firsts[id(next(iter(made.children())))] = index
        return made

    model = family.impl.build(knobs, shape, n_classes, slot)
    rows: dict[int, list[str]] = {}
    last: tuple[str, Any] | None = None  # the weight layer most recently met, in registration order
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            last = (name, module)
        index = firsts.get(id(module))
        if index is not None and index not in rows:
            given = recipe["slots"][index].get("name")
            layer = given or (last[0] if last else "-")
            rows[index] = [str(index), layer, _kind(last[1]) if last else "-"]
    return [rows.get(i, [str(i), "-", "-"]) for i in range(len(recipe["slots"]))]


@app.command()
def inspect(spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")]) -> None:
    """The slots the spec's model has: index, layer and kind (auto: found by tracing, with today's chain)."""
    from regsearch.cli.spec_check import check_spec_file
    from regsearch.cli.tables import KEEP, Col, fitted_table
    from regsearch.worker.families import load_plugins

    load_plugins()  # the model is built here: the plugin families installed here
    job_spec = check_spec_file(spec).spec  # as POST /jobs checks it: what the workers publish
    model = job_spec.model
    info = model.info
    from regsearch.worker.datasets import DatasetError, input_shape_for, load_dataset_cached

    try:
        splits = load_dataset_cached(job_spec.dataset, Path(cli_settings().data_dir), job_spec.task)
        shape = input_shape_for(splits, model)
    except (DatasetError, ValueError) as exc:
        fail(str(exc), 2)
    width = min(console.width, 80)
    if model.family != "auto":
        try:
            rows = built_slots(job_spec, shape, splits.n_classes)
        except Exception as exc:  # noqa: BLE001 - a plugin's build may raise anything: say so, exit 1
            fail(f"model {model.family}: building it on {shape} failed: {type(exc).__name__}: {exc}", 1)
        console.print(f"model {model.describe()} on {shape}: {len(rows)} slot(s): {info.slots_doc}")
        columns = [Col("slot"), Col("layer", KEEP, "left"), Col("kind", 2, "left"),
                   Col("search may change", 1, "left", wrap=True)]
        console.print(fitted_table(columns, [[*row, MAY_CHANGE] for row in rows], width))
        return
    from regsearch.worker.families.auto import NetworkError, survey

    try:
        found = survey(model.knobs.network, shape)
    except NetworkError as exc:
        fail(str(exc), 2)
    rows, index = [], 0
    for f in found:
        if f.is_slot:
            rows.append([str(index), f.layer, f.kind, f.chain_text, MAY_CHANGE])
            index += 1
        else:
            rows.append(["-", f.layer, f.kind, f.chain_text, "nothing (no activation)"])
    columns = [Col("slot"), Col("layer", KEEP, "left"), Col("kind", 2, "left"),
               Col("today", KEEP, "left"), Col("search may change", 1, "left", wrap=True)]
    console.print(f"network {model.knobs.network!r} on {shape}: {index} slot(s)")
    console.print(fitted_table(columns, rows, width))
