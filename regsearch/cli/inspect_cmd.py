"""``regsearch inspect SPEC.yaml``: the slots the spec's model has, before anything is submitted.

For ``auto`` the slots are found by tracing the network (the worker is imported lazily, as
``regsearch trial`` does, and the dataset is loaded for its sample shape); other families print
their slot count and ``slots_doc``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regsearch.cli.common import _settings, app, console, fail
from regsearch.domain.spec import SpecError, load_spec

MAY_CHANGE = "bn, dropout, order"


@app.command()
def inspect(spec: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")]) -> None:
    """The slots the spec's model has (for auto: found by tracing), index, layer and chain."""
    from regsearch.cli.tables import Col, fitted_table
    from regsearch.domain import families

    try:
        job_spec = load_spec(spec)
    except SpecError as exc:
        fail(str(exc), 2)
    model = job_spec.model
    info = families.family(model.family)
    count = model.n_slots()
    if count is not None:
        console.print(f"model {model.family}: {count} slot(s): {info.slots_doc}", highlight=False)
        return
    from regsearch.worker.datasets import DatasetError, input_shape_for, load_dataset_cached

    try:
        splits = load_dataset_cached(job_spec.dataset, Path(_settings().data_dir))
        shape = input_shape_for(splits, model)
    except (DatasetError, ValueError) as exc:
        fail(str(exc), 2)
    if model.family != "auto":
        from regsearch.worker import families as registry

        n = registry.get(model.family).impl.slots(model.knobs, shape)
        console.print(f"model {model.family} on {shape}: {n} slot(s): {info.slots_doc}", highlight=False)
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
    columns = [Col("slot"), Col("layer", justify="left"), Col("kind", 2, "left"),
               Col("today", justify="left"), Col("search may change", 1, "left")]
    console.print(f"network {model.knobs.network!r} on {shape}: {index} slot(s)", highlight=False)
    console.print(fitted_table(columns, rows, min(console.width, 80)), highlight=False)
