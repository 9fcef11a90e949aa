"""A family known only from what a worker published: its knobs as JSON schema (torch-free).

The API and the coordinator never import a plugin. They learn a plugin family from the
database (``regsearch.store.families``), and :func:`family_info` turns the published row into a
:class:`~regsearch.domain.families.FamilyInfo` whose knobs model checks each knob against the
property's JSON schema (with ``jsonschema`` where it is installed, else the common keywords:
type, enum, const, bounds, lengths, items), so errors name the knob (``model.width``) and a
misspelt knob gets "did you mean". The worker validates again with the plugin's own model.

:class:`PublishedCatalog` is a ``regsearch.domain.families.FamilyCatalog``: the families live
workers offer, read from the database at most every ``ttl_s``, which a caller passes to a spec's
validation (``JobSpec.model_validate(data, context=validation_context(catalog))``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from regsearch.domain.families import FamilyInfo

log = logging.getLogger(__name__)

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        return node if isinstance(node, Mapping) else {}
    return schema


def _fallback_error(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> str | None:
    """The first way ``value`` breaks ``schema`` (common keywords only); None when it fits."""
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            errors = [_fallback_error(value, s, root) for s in schema[key]]
            if all(errors):
                return errors[0]
    for sub in schema.get("allOf", []):
        if (error := _fallback_error(value, sub, root)) is not None:
            return error
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    if kinds and not any(_JSON_TYPES.get(k, lambda _v: True)(value) for k in kinds):
        return f"must be of type {' or '.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {', '.join(map(repr, schema['enum']))}"
    if "const" in schema and value != schema["const"]:
        return f"must be {schema['const']!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, test, word in (("minimum", value.__lt__, ">="), ("maximum", value.__gt__, "<="),
                                ("exclusiveMinimum", value.__le__, ">"), ("exclusiveMaximum", value.__ge__, "<")):
            if key in schema and test(schema[key]):
                return f"must be {word} {schema[key]}"
    if isinstance(value, (str, list)):
        low, high = ("minLength", "maxLength") if isinstance(value, str) else ("minItems", "maxItems")
        if low in schema and len(value) < schema[low]:
            return f"needs at least {schema[low]} {'characters' if isinstance(value, str) else 'items'}"
        if high in schema and len(value) > schema[high]:
            return f"takes at most {schema[high]} {'characters' if isinstance(value, str) else 'items'}"
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            if (error := _fallback_error(item, schema["items"], root)) is not None:
                return f"item {i}: {error}"
    return None


def _schema_error(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> str | None:
    try:
        import jsonschema
    except ImportError:  # not a dependency of the API: the common keywords are checked by hand
        return _fallback_error(value, schema, root)
    full = {**schema, **({"$defs": root["$defs"]} if "$defs" in root else {})}
    try:
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(full).iter_errors(value))
    except jsonschema.exceptions.SchemaError:
        return _fallback_error(value, schema, root)
    if error is None:
        return None
    where = "".join(f"[{p}]" for p in error.path)
    return f"{where + ': ' if where else ''}{error.message}"


def _checker(name: str, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        error = _schema_error(value, schema, root)
        if error is not None:
            raise ValueError(error)
        return value

    check.__name__ = f"check_{name}"
    return check


def knobs_model(family: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model of the knobs ``schema`` describes (a plugin's ``Knobs.model_json_schema()``)."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields: dict[str, Any] = {}
    for key, sub in properties.items():
        sub = sub if isinstance(sub, Mapping) else {}
        annotated = Annotated[Any, AfterValidator(_checker(key, sub, schema))]
        if key in required or "default" not in sub:
            fields[key] = (annotated, Field(...) if key in required else Field(default=None))
        else:
            fields[key] = (annotated, Field(default=sub["default"], validate_default=False))
    extra = "allow" if schema.get("additionalProperties") is True else "forbid"
    model = create_model(  # type: ignore[call-overload]
        f"{family.title().replace('_', '').replace('-', '')}PublishedKnobs",
        __config__=ConfigDict(extra=extra, frozen=True),
        **fields,
    )
    published = dict(schema)
    model.model_json_schema = classmethod(lambda cls, *a, **k: dict(published))  # the worker's schema as is
    return model


def _unknown_slots(_knobs: Any, _shape: Sequence[int] | None) -> int:
    raise ValueError("a plugin family's slot count is known only where the plugin is installed (a worker)")


def family_info(row: Mapping[str, Any]) -> FamilyInfo:
    """The control plane's description of a published family (``{name, knobs, slots_doc, source}``)."""
    name = str(row["name"])
    return FamilyInfo(
        name=name, knobs=knobs_model(name, row.get("knobs") or {}), slots=_unknown_slots,
        slots_doc=str(row.get("slots_doc") or ""), input_shape=lambda _k, shape: [int(d) for d in shape],
        input_doc="what the plugin accepts", static_slots=False, source="plugin",
    )  # fmt: skip


class PublishedCatalog:
    """The plugin families that workers offer, from ``load() -> {name: row}``, cached ``ttl_s``.

    ``regsearch.store.families.offered`` is the usual ``load`` (bound to a database and a
    liveness window). A failing load keeps the last answer: validation never depends on a
    database hiccup more than it must.
    """

    def __init__(self, load: Callable[[], Mapping[str, Mapping[str, Any]]], *, ttl_s: float = 2.0) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._rows: dict[str, Mapping[str, Any]] = {}
        self._infos: dict[tuple[str, str], FamilyInfo] = {}

    def rows(self) -> dict[str, Mapping[str, Any]]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                try:
                    self._rows = {k: v for k, v in self._load().items() if v.get("source") == "plugin"}
                except Exception as exc:  # noqa: BLE001 - keep the last answer; the next call retries
                    log.warning("could not read the published families: %s", exc)
                self._at = time.monotonic()
            return dict(self._rows)

    def get(self, name: str) -> FamilyInfo | None:
        row = self.rows().get(name)
        if row is None:
            return None
        import json

        key = (name, json.dumps(row.get("knobs"), sort_keys=True, default=str) + str(row.get("slots_doc")))
        with self._lock:
            if key not in self._infos:
                self._infos[key] = family_info(row)
            return self._infos[key]

    def names(self) -> list[str]:
        return sorted(self.rows())
