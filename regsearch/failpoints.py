"""Named points where the fault tests kill or break a real process, off unless configured.

``REGSEARCH_FAILPOINTS="coordinator.after_ask=kill,worker.epoch:act-drop=oom"`` makes the
coordinator SIGKILL itself right after ``study.ask()``, and every trial whose placement is
``act-drop`` raise an out-of-memory error at its first epoch. Actions: ``kill`` (SIGKILL this
process), ``oom`` (a RuntimeError like CUDA's), ``raise`` (a FailpointError). Reading one
environment variable per call is the whole production cost.
"""

from __future__ import annotations

import os
import signal

ENV = "REGSEARCH_FAILPOINTS"


class FailpointError(RuntimeError):
    pass


def _configured() -> dict[str, str]:
    points = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, action = item.strip().partition("=")
        if name:
            points[name] = action or "raise"
    return points


def hit(name: str) -> None:
    """Act as configured for ``name``; nothing when it is not configured."""
    if ENV not in os.environ:
        return
    action = _configured().get(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "oom":
        raise RuntimeError(f"CUDA out of memory. Tried to allocate 20.00 GiB (failpoint {name})")
    raise FailpointError(f"failpoint {name}")
