"""Validation errors as ``[{field, message}]`` with dotted field names (``space.dropout.low``).

Shared by the CLI (through :func:`regsearch.domain.spec.validate_spec`) and the API, so a bad field is
named the same way everywhere. An unknown (misspelt) field is answered with the closest valid
name of its model: ``space.dropuot: unknown field; did you mean `dropout`?``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

MAX_MESSAGE_CHARS = 300
# Pydantic names union members in the location ("float", "list[float]", "function-after[...]");
# they say which alternative failed, not where in the document.
_TYPE_TAGS = frozenset({"float", "int", "str", "bool", "dict", "list", "none", "bytes"})


def _is_type_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or part[:1].isupper())


def field_name(loc: Sequence[Any], error_type: str = "") -> str:
    """``("body", "space", "dropout", "function-after[...]", "low")`` -> ``"space.dropout.low"``."""
    parts = list(loc)
    if parts[:1] == ["body"]:
        parts = parts[1:]
    # An unknown key is reported by its own name, whatever it looks like.
    tail = [parts.pop()] if error_type == "extra_forbidden" and parts else []
    named = [str(p) for p in parts if not _is_type_tag(p)] + [str(p) for p in tail]
    return ".".join(named) or "body"


def _is_shape_error(error_type: str) -> bool:
    """A plain type mismatch, as each non-matching member of a union reports one."""
    return error_type.endswith(("_type", "_parsing"))


def _message(err: Mapping[str, Any]) -> str:
    message = str(err.get("msg") or "invalid")
    message = message.removeprefix("Value error, ")
    return message[:MAX_MESSAGE_CHARS]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (``X | None``, ``list[X]``, ``Annotated[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(m for m in _models_in(arg) if m not in found)
    return found


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _parent_models(model: type[BaseModel], loc: Sequence[Any]) -> list[type[BaseModel]]:
    """The models that may own the last part of ``loc``, found by walking ``model``'s fields."""
    current = [model]
    for part in loc:
        if not isinstance(part, str) or _is_type_tag(part):
            continue  # a list index or a union member's tag: same models, one level in
        following: list[type[BaseModel]] = []
        for candidate in current:
            names = {info.alias or name: info for name, info in candidate.model_fields.items()}
            if part in names:
                following.extend(m for m in _models_in(names[part].annotation) if m not in following)
        current = following
        if not current:
            return []
    return current


def unknown_field_message(key: str, valid: Iterable[str]) -> str:
    """``unknown field; did you mean `dropout`?``, or the valid names when none is close."""
    names = sorted(set(valid))
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean `{close[0]}`?"
    return "unknown field; valid fields: " + ", ".join(names) if names else "unknown field"


def _unknown_field(err: Mapping[str, Any], model: type[BaseModel]) -> str | None:
    """The suggestion for an ``extra_forbidden`` error inside ``model``, or None."""
    loc = list(err.get("loc", ()))
    if loc[:1] == ["body"]:
        loc = loc[1:]
    if not loc or not isinstance(loc[-1], str):
        return None
    parents = _parent_models(model, loc[:-1])
    if not parents:
        return None
    return unknown_field_message(loc[-1], [n for parent in parents for n in _field_names(parent)])


def field_errors(
    errors: Iterable[Mapping[str, Any]], model: type[BaseModel] | None = None
) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as ``[{field, message}]``, one entry per field, most useful first.

    Within a union, the member that matched the input's shape explains the problem; the other
    members only say "not a number" or "not a list", so those are dropped when a better error
    for the same field, or for a field inside it, exists. With ``model`` (the validated
    document's model), an unknown field is answered with the closest valid name, and comes
    first: a misspelt key also makes the key it meant "missing".
    """
    errors = list(errors)
    if model is not None:
        errors.sort(key=lambda err: err.get("type") != "extra_forbidden")  # stable
    by_field: dict[str, list[tuple[bool, str]]] = {}
    for err in errors:
        error_type = str(err.get("type", ""))
        field, message = field_name(err.get("loc", ()), error_type), _message(err)
        if error_type == "extra_forbidden" and model is not None:
            message = _unknown_field(err, model) or message
        ctx_error = (err.get("ctx") or {}).get("error")
        if ctx_error is not None and hasattr(ctx_error, "field") and hasattr(ctx_error, "message"):
            field, message = str(ctx_error.field), str(ctx_error.message)[:MAX_MESSAGE_CHARS]
        by_field.setdefault(field, []).append((_is_shape_error(error_type), message))

    result = []
    for field, entries in by_field.items():
        specific = [m for shape, m in entries if not shape]
        if not specific and any(
            other.startswith(field + ".") for other in by_field if other != field
        ):
            continue
        messages = specific or [m for _, m in entries]
        result.append({"field": field, "message": "; ".join(dict.fromkeys(messages))})
    return result or [{"field": "body", "message": "invalid request"}]
