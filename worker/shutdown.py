"""Graceful drain on SIGTERM (a deploy): running trials stop at their next epoch and go back
to the queue instead of holding the worker until they finish.

Celery's warm shutdown waits for running tasks. Its parent process sets a flag in memory
shared with the pool processes (created before the pool forks, so every child sees it); a
trial checks it at every epoch, and a task that starts while the worker drains hands its
message back to the broker unclaimed. Signals would not do: billiard resets the children's
handlers after Celery's process-init hooks run, and an idle child would simply die.
"""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

from celery import Celery, signals

_FLAG = multiprocessing.RawValue("b", 0)  # shared memory, inherited across the pool's fork
log = logging.getLogger("regsearch.worker")


def draining() -> bool:
    """True once the worker that owns this process began shutting down."""
    return bool(_FLAG.value)


def _on_parent_shutdown(sig: Any = None, how: Any = None, exitcode: Any = None, **_: Any) -> None:
    _FLAG.value = 1
    log.info("worker shutting down (%s): running trials go back to the queue at their next epoch", how)


def install(app: Celery) -> None:
    """Connect the drain to this worker app's shutdown."""
    signals.worker_shutting_down.connect(_on_parent_shutdown, weak=False)
