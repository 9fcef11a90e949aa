"""Validation errors as ``[{field, message}]`` with dotted field names (``space.dropout.low``).

Shared by the CLI (through :func:`regsearch.domain.spec.validate_spec`) and the API, so a bad field is
named the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as ``[{field, message}]``, one entry per field, most useful first.

    Within a union, the member that matched the input's shape explains the problem; the other
    members only say "not a number" or "not a list", so those are dropped when a better error
    for the same field, or for a field inside it, exists.
    """
    by_field: dict[str, list[tuple[bool, str]]] = {}
    for err in errors:
        error_type = str(err.get("type", ""))
        field, message = field_name(err.get("loc", ()), error_type), _message(err)
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
