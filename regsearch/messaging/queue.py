"""The Celery app factory and the names both sides agree on.

The control plane (API, coordinator) sends tasks *by name* with this app and never imports
``worker/`` or torch; the worker registers its task under the same name. JSON only: a message
in any other serialization (pickle above all) is rejected, never executed.
"""

from __future__ import annotations

import socket
from typing import Any

from celery import Celery

from regsearch.config import Settings

RUN_TRIAL_TASK = "regsearch.run_trial"
DEFAULT_QUEUE = "regsearch"


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    url = settings.celery_broker_url
    if url.startswith("filesystem://"):
        folder = str(settings.queue_dir / "in")
        return {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "processed_folder": str(settings.queue_dir / "processed"),
            "control_folder": str(settings.queue_dir / "control"),  # else ./control in the cwd
            "store_processed": False,
            "polling_interval": 0.1,
        }
    if url.startswith(("redis://", "rediss://")):
        # A trial running longer than this is delivered again; the claim step makes the
        # duplicate harmless, and a long timeout keeps it rare (docs/operations.md).
        # kombu sweeps for overdue messages only every interval x throttle (10 x 10 s by
        # default), so a short visibility timeout would act ~100 s late: sweep a few times per
        # timeout instead (a sweep is one ZRANGEBYSCORE).
        sweep_s = max(1, min(60, settings.visibility_timeout_s // 4))
        # A silent partition (packets dropped, no reset): socket_timeout ends a synchronous
        # command (an ack, a publish); kombu drops a BRPOP connection whose reply is overdue by
        # health_check_interval (BRPOP itself uses the event loop, where socket_timeout does not
        # apply, so socket_timeout need not exceed brpop_timeout); TCP keepalive ends an idle
        # one (10 s, then 3 probes 5 s apart); redis-py pings a connection idle for more than
        # 15 s before reusing it. An ack that timed out must still free its prefetch slot, or
        # the worker never consumes again: see broker_transport() and redis_transport.py.
        keepalive = {socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}
        return {"visibility_timeout": settings.visibility_timeout_s, "unacked_restore_interval": sweep_s,
                "unacked_restore_throttle": 1, "socket_timeout": 10, "socket_connect_timeout": 5,
                "socket_keepalive": True, "socket_keepalive_options": keepalive, "health_check_interval": 15}
    return {}


def broker_transport(settings: Settings) -> str | None:
    """kombu's transport for the broker URL: for Redis, one whose failed ack frees its slot.

    Only for ``redis://``: kombu turns TLS on for ``rediss://`` from the URL's scheme, which a
    transport named by class bypasses, so that scheme keeps kombu's own transport.
    """
    if settings.celery_broker_url.startswith("redis://"):
        from regsearch.messaging.redis_transport import TRANSPORT

        return TRANSPORT
    return None


def make_celery(settings: Settings) -> Celery:
    """The one Celery app, configured for long, idempotent, JSON-only tasks."""
    if settings.celery_broker_url.startswith("filesystem://"):
        settings.ensure_dirs()
    app = Celery("regsearch", broker=settings.celery_broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=True,
        broker_transport_options=broker_transport_options(settings),
        broker_transport=broker_transport(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app


class TrialQueue:
    """Sends ``run_trial(trial_id)`` messages; the coordinator's only contact with Celery."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, trial_id: int, queue: str = DEFAULT_QUEUE) -> None:
        self.app.send_task(RUN_TRIAL_TASK, args=[trial_id], queue=queue, retry=True,
                           retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})

    def ping(self) -> None:
        """Raise unless the broker accepts a connection."""
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
