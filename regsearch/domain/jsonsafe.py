"""Plain JSON everywhere: NaN and infinities become ``null`` before they reach a wire or a column.

PostgreSQL's JSON type and strict JSON parsers reject ``NaN``/``Infinity`` tokens, and Starlette
refuses to serialize them (a 500); a diverged trial must not break ``/best`` or the dashboard.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (recursively) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Strict JSON text (no NaN tokens); used as the SQLAlchemy JSON serializer."""
    return json.dumps(finite_or_none(value), allow_nan=False, separators=(",", ":"))
