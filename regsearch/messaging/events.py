"""Notices to the coordinator, so it acts at once instead of at its next poll: workers send
``trial_finished`` (refill), the API sends ``job_submitted`` and ``job_cancelled``. JSON over the
same broker as the trials; losing one only delays the coordinator until its next poll, so
publishing is best-effort.
"""

from __future__ import annotations

import contextlib
import logging
import queue as queue_module
from typing import Any

from celery import Celery
from kombu import Queue

EVENTS_QUEUE = "regsearch.messaging.events"
log = logging.getLogger("regsearch.messaging.events")


def publish_trial_finished(app: Celery, job_id: str) -> None:
    """Tell the coordinator that a trial of ``job_id`` ended (never raises)."""
    publish_event(app, "trial_finished", job_id)


def publish_event(app: Celery, event: str, job_id: str) -> None:
    """Wake the coordinator about ``job_id`` (never raises)."""
    try:
        with app.producer_or_acquire() as producer:
            producer.publish({"event": event, "job_id": job_id}, exchange="", routing_key=EVENTS_QUEUE,
                             serializer="json", declare=[Queue(EVENTS_QUEUE)], retry=True,
                             retry_policy={"max_retries": 1, "interval_start": 0.1})
    except Exception as exc:  # noqa: BLE001 - best effort: the coordinator's poll covers a lost notice
        log.warning("could not notify the coordinator: %s", exc)


class EventListener:
    """The coordinator's side: block until a notice arrives or the timeout passes."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._connection: Any = None
        self._queue: Any = None

    def _open(self) -> None:
        if self._queue is None:
            self._connection = self.app.connection_for_read()
            self._queue = self._connection.SimpleQueue(EVENTS_QUEUE, no_ack=True, serializer="json")

    def wait(self, timeout_s: float) -> bool:
        """True when at least one notice arrived (all pending ones are consumed)."""
        try:
            self._open()
            self._queue.get(block=True, timeout=timeout_s)
        except queue_module.Empty:
            return False
        except Exception as exc:  # noqa: BLE001 - broker down: behave like a plain poll
            log.warning("event queue unavailable (%s); polling instead", exc)
            self.close()
            import time

            time.sleep(timeout_s)
            return False
        self.drain()
        return True

    def drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue_module.Empty:
            pass
        except Exception:  # noqa: BLE001 - next wait reopens
            self.close()

    def close(self) -> None:
        for thing in (self._queue, self._connection):
            if thing is not None:
                with contextlib.suppress(Exception):  # closing what may already be broken
                    thing.close()
        self._queue = self._connection = None
