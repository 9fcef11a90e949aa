"""The base of every part of a job spec: unknown fields refused, values frozen, no control chars."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["Strict"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL, and control characters in a name are never intended.
        if isinstance(value, str) and any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ValueError("control characters are not allowed")
        return value
