"""Figures the cluster tests measure (adoption time, ...): printed and kept in
test-artifacts/cluster.json. They are reported, not asserted (a shared machine's timings vary)."""

from __future__ import annotations

import json
from pathlib import Path

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "cluster.json"


def record(name: str, value: object) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    figures = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    figures[name] = value
    ARTIFACT.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"[cluster] {name}: {value}")
