"""The device a worker or a local trial trains on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

One parser for the CLI (``regsearch worker --device``, ``regsearch trial --device``) and the
trainer (:func:`regsearch.worker.train.select_device`). Torch-free, so the CLI can refuse a bad
``--device`` before anything heavy is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE_RE = re.compile(r"(auto|cpu|cuda)(?::([0-9]+))?")


@dataclass(frozen=True)
class Device:
    """A parsed device request; ``index`` is set only for ``cuda:N``."""

    kind: Literal["auto", "cpu", "cuda"]
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str) -> Device:
    """``"cuda:1"`` -> ``Device("cuda", 1)``; raise ValueError naming the choices otherwise."""
    match = _DEVICE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ValueError(f"{text!r} is not {DEVICE_CHOICES}")
    kind = match.group(1)
    index = int(match.group(2)) if match.group(2) is not None else None
    return Device(kind, index)  # type: ignore[arg-type]
