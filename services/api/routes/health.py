"""Liveness and readiness; both stay open when a token is configured (probes carry none)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, HTTPException

from regsearch.services.api.deps import BrokerPingDep, DatabaseDep
from regsearch.services.api.errors import MAX_MESSAGE_CHARS, RETRY_AFTER_S
from regsearch.services.api.schemas import ErrorPublic, HealthPublic
from regsearch.store.db import Database

router = APIRouter(tags=["health"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:MAX_MESSAGE_CHARS]


def readiness_problems(db: Database, broker_ping: Callable[[], None]) -> list[str]:
    """What keeps the API from serving: an unreachable database, an unreachable broker."""
    problems = []
    try:
        db.ping()  # raises StoreUnavailable("database unavailable: ...")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        message = _first_line(exc)
        problems.append(
            message if message.startswith("database") else f"database unavailable: {message}"
        )
    try:
        broker_ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"broker unavailable: {_first_line(exc)}")
    return problems


@router.get("/healthz", response_model=HealthPublic)
def healthz() -> HealthPublic:
    """Liveness: the process answers."""
    return HealthPublic()


@router.get("/readyz", response_model=HealthPublic, responses={503: {"model": ErrorPublic}})
def readyz(db: DatabaseDep, broker_ping: BrokerPingDep) -> HealthPublic:
    """Readiness: the database and the broker both answer."""
    problems = readiness_problems(db, broker_ping)
    if problems:
        raise HTTPException(
            status_code=503, detail="; ".join(problems), headers={"Retry-After": str(RETRY_AFTER_S)}
        )
    return HealthPublic()
