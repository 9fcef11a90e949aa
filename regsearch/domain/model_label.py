"""A job's model in one short line: its family, then every knob (``resnet depth=20 width=16 activation=relu``).

The one place that writes a model for people: the dashboard (job header, jobs list, compare),
the report's header (Markdown and JSON) and ``regsearch status`` all show this line. Lists are
written compactly (``hidden=[256,256]``) so the line stays short and a table cell never breaks
inside a knob.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from regsearch.domain import families


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def format_model(model: Mapping[str, Any]) -> str:
    """``{family: resnet, depth: 20, width: 16}`` -> ``resnet depth=20 width=16`` (knobs in order)."""
    family = model.get("family", "mlp")
    knobs = [f"{k}={_value(v)}" for k, v in model.items() if k != "family"]
    return " ".join([str(family), *knobs])


def model_label(spec: Any) -> str | None:
    """The line for a job spec (a ``JobSpec``, or a stored spec read leniently), None without one.

    A stored spec's model is checked by its family's knobs first (``families.validate_model``,
    what ``ModelSpec`` runs), so defaults show as the job ran with them; one that no longer
    validates (an old spec, a plugin family whose catalog this process cannot see) is written as
    stored. This module sits below ``spec`` (whose ``ModelSpec.describe`` writes its line here), so
    a ``JobSpec`` is recognised by its ``model.describe``, not imported.
    """
    described = getattr(getattr(spec, "model", None), "describe", None)
    if callable(described):  # a JobSpec
        return str(described())
    if not isinstance(spec, Mapping) or not spec:
        return None
    model = spec.get("model")
    if model is None:  # the default model, as the job ran with it
        model = {}
    if not isinstance(model, Mapping):
        return None
    try:
        return format_model(families.validate_model(dict(model)))
    except (ValueError, TypeError):  # KnobsError and pydantic's ValidationError are ValueErrors
        return format_model(model)


def slot_labels(recipe: Any) -> list[str]:
    """Each slot of a trial's recipe by the user's own layer name (``layer1.0.conv1``, where the
    family names its slots: ``auto``), else ``slot i``; [] for a recipe without slots."""
    slots = recipe.get("slots") if isinstance(recipe, Mapping) else None
    if not isinstance(slots, list):
        return []
    return [str(s["name"]) if isinstance(s, Mapping) and s.get("name") else f"slot {i}" for i, s in enumerate(slots)]


def has_slot_names(recipe: Any) -> bool:
    """Whether the recipe names its slots by layer (not just ``slot i``)."""
    slots = recipe.get("slots") if isinstance(recipe, Mapping) else None
    return isinstance(slots, list) and any(isinstance(s, Mapping) and s.get("name") for s in slots)
