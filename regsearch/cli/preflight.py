"""Before a component starts: is its database there, does its broker answer?

A missing PostgreSQL database or a broker on a closed port would otherwise surface as a driver
traceback from deep inside a migration or Celery's start-up retries. Each component command
calls :func:`require` first: one line naming what is missing and what to do, exit 2, nothing
started. URLs are printed with their passwords masked.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from regsearch.cli.common import fail
from regsearch.config import Settings


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def database_problem(settings: Settings) -> str | None:
    """Why the configured database cannot be used, with what to do; None when it can."""
    from regsearch.store.db import DatabaseMissing, StoreError, check_database

    url = settings.sqlalchemy_url
    source = "REGSEARCH_DATABASE_URL" if settings.database_url else "the default SQLite file"
    try:
        check_database(url)
    except DatabaseMissing as exc:
        return (f"{exc} ({source}={mask_url(url)}). Create it with: regsearch db upgrade --create "
                f"(or CREATE DATABASE \"{exc.name}\" as a user who may)")
    except StoreError as exc:
        return f"{exc} ({source}={mask_url(url)})"
    return None


def broker_problem(settings: Settings) -> str | None:
    """Why the configured broker does not answer; None when it does (or it is the embedded one)."""
    if settings.broker_url is None:
        return None  # the embedded broker is a folder in the data directory
    from regsearch.messaging.queue import TrialQueue, make_celery

    try:
        TrialQueue(make_celery(settings)).ping()
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; all mean "not there"
        reason = " ".join(str(exc).split()).rstrip(".") or exc.__class__.__name__
        return (f"cannot reach the broker at {mask_url(settings.broker_url)} (REGSEARCH_BROKER_URL): {reason}. "
                "Is it running there?")
    return None


def require(settings: Settings, *, broker: bool = True) -> None:
    """Exit 2 naming the problem unless the database (and the broker) can be used."""
    problem = database_problem(settings) or (broker_problem(settings) if broker else None)
    if problem:
        fail(problem, 2)
