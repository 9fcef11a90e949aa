"""A worker's pool processes fork from a parent that migrated the database: no socket is shared."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from sqlalchemy import text

from regsearch.store.migrate import upgrade
from regsearch.store.studies import optuna_storage
from regsearch.worker.tasks import forget_inherited_connections


def _child(url: str, parent_backend_pid: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    forget_inherited_connections()
    engine = optuna_storage(url).engine
    with engine.connect() as conn:
        out.put((engine.pool.checkedin(), conn.execute(text("SELECT pg_backend_pid()")).scalar(), os.getpid()))


@pytest.mark.services
def test_upgrade_returns_its_connections_and_a_forked_child_opens_its_own(pg_url: str) -> None:
    upgrade(pg_url)
    engine = optuna_storage(pg_url).engine
    assert engine.pool.checkedin() == 0, "the migrating parent keeps no pooled connection to hand down"

    with engine.connect() as conn:  # the parent works with the database, then its pool holds one
        parent_backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    assert engine.pool.checkedin() == 1

    out: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()  # type: ignore[type-arg]
    child = multiprocessing.get_context("fork").Process(target=_child, args=(pg_url, parent_backend, out))
    child.start()
    child.join(30)
    inherited, child_backend, _ = out.get(timeout=5)
    assert child.exitcode == 0
    assert inherited == 0, "the child started from an empty pool"
    assert child_backend != parent_backend, "the child talks to PostgreSQL over its own connection"
    with engine.connect() as conn:  # and the parent's connection still works
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == parent_backend
