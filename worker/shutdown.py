"""Graceful drain on SIGTERM (a deploy): running trials stop at their next epoch and go back
to the queue instead of holding the worker until they finish.

Celery's warm shutdown waits for running tasks; the parent therefore tells its pool children
(SIGUSR2: SIGUSR1 is billiard's soft time limit) and each child's trial sees :data:`DRAINING`
at its next epoch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from celery import Celery, signals

DRAINING = threading.Event()
DRAIN_SIGNAL = signal.SIGUSR2
log = logging.getLogger("regsearch.worker")


def _on_parent_shutdown(sig: Any = None, how: Any = None, exitcode: Any = None, **_: Any) -> None:
    from billiard import process

    for child in process.active_children():
        try:
            os.kill(child.pid, DRAIN_SIGNAL)
        except ProcessLookupError:
            pass
    log.info("worker shutting down (%s): running trials go back to the queue at their next epoch", how)


def listen() -> None:
    """In a trial process: turn the drain signal into :data:`DRAINING` (idempotent).

    Called when a task starts rather than at process init: billiard resets every signal
    handler after Celery's ``worker_process_init`` hooks have run.
    """
    try:
        if signal.getsignal(DRAIN_SIGNAL) is not _set_draining:
            signal.signal(DRAIN_SIGNAL, _set_draining)
    except ValueError:  # not the main thread (a threads pool): no drain, the trial just runs
        pass


def _set_draining(*_args: Any) -> None:
    DRAINING.set()


def _ignore_until_listening(**_: Any) -> None:
    # A pool process that never ran a task would die of the drain signal's default action (and
    # log an error); ignoring it survives billiard's signal reset, and listen() takes over.
    signal.signal(DRAIN_SIGNAL, signal.SIG_IGN)


def install(app: Celery) -> None:
    """Connect the drain to this worker app's shutdown."""
    signals.worker_shutting_down.connect(_on_parent_shutdown, weak=False)
    signals.worker_process_init.connect(_ignore_until_listening, weak=False)
