"""Bounded retries for transient database failures (a restart, a failover, a full pool).

A worker that cannot reach the database for a few seconds must neither lose its epoch rows nor
leave its trial stuck in ``running``: it retries with jittered backoff up to a deadline, and past
that lets the exception end the task, so the coordinator's reaper takes over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import tenacity
from sqlalchemy.exc import DBAPIError, OperationalError

from regsearch.store.db import StoreUnavailable

T = TypeVar("T")
log = logging.getLogger("regsearch.store.retry")


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures; constraint violations and bugs are not retried."""
    if isinstance(exc, (StoreUnavailable, OperationalError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # Optuna wraps storage errors in StorageInternalError; look at what it wraps.
    if type(exc).__name__ == "StorageInternalError" and exc.__cause__ is not None:
        return is_transient(exc.__cause__)
    return False


def with_retry(fn: Callable[[], T], *, what: str, max_seconds: float = 60.0) -> T:
    """Call ``fn`` until it succeeds, a non-transient error occurs, or ``max_seconds`` pass."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_delay(max_seconds),
        # 0.2 s doubling to 5 s, plus up to 1 s of jitter (wait_exponential_jitter's `initial`
        # is deprecated in tenacity 9.2 and its replacement is missing before it).
        wait=tenacity.wait_exponential(multiplier=0.2, max=5.0) + tenacity.wait_random(0, 1),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "%s failed (%s); retrying", what, state.outcome.exception() if state.outcome else "?"
        ),
    )
    return retrying(fn)
