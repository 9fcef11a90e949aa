"""Engines and sessions: one place that knows SQLite's and PostgreSQL's quirks.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on the lock instead of failing later with
"database is locked" when a read transaction tries to upgrade. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from regsearch.domain import jsonsafe

SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(RuntimeError):
    """A database problem the caller can report (not a bug in the caller)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; retrying later may succeed."""


class DatabaseMissing(StoreError):
    """The PostgreSQL server answers but has no database of this name (``create_database`` makes it)."""

    def __init__(self, name: str, server: str) -> None:
        self.name, self.server = name, server
        super().__init__(f"database {name!r} does not exist on the PostgreSQL server at {server}")


def normalize_url(url: str) -> str:
    """Use psycopg 3 for a bare ``postgresql://`` URL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@functools.lru_cache(maxsize=64)  # asked for every epoch write: parsing the URL each time showed in profiles
def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def engine_kwargs(url: str, *, pre_ping: bool = True, durable: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` (shared with Optuna's RDB storage).

    ``pre_ping=False`` skips the round trip that tests each pooled connection at checkout; only
    for callers that retry every transaction on a connection error (the worker's
    :func:`regsearch.store.retry.with_retry`): a connection broken by a database restart then fails
    one attempt, SQLAlchemy drops the pool, and the retry reconnects. ``durable=False`` gives
    PostgreSQL connections ``synchronous_commit=off`` for their whole life.
    """
    if is_sqlite(url):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}}
    # A connect timeout keeps /readyz and the workers from hanging on a host that drops packets.
    # On a connection already open, a partition is silent: tcp_user_timeout fails a request the
    # server has not acknowledged within 10 s, and keepalives end a connection whose answers
    # stopped coming (10 s idle, then 3 probes 5 s apart); without them a read waits for TCP's
    # retransmissions (about 15 minutes) and the API answers nothing instead of a 503
    # (tests/cluster/test_faults.py cuts the control host off the database host).
    connect_args: dict[str, Any] = {"connect_timeout": 5, "tcp_user_timeout": 10_000, "keepalives": 1,
                                    "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
    if not durable:
        connect_args["options"] = "-c synchronous_commit=off"
    return {"pool_pre_ping": pre_ping, "pool_size": 5, "max_overflow": 10, "pool_recycle": 1800,
            "connect_args": connect_args}


def install_sqlite_pragmas(engine: Engine, *, writer: bool = True) -> None:
    """WAL, busy timeout and (for the writer engine) ``BEGIN IMMEDIATE`` on every connection."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (pysqlite's
        # implicit BEGIN would be DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")

        if not writer:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the lock up front; readers use a plain (deferred) snapshot and never
        # queue behind the workers' writes (WAL lets them read while one writer writes).
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def make_engine(url: str, *, read_only: bool = False, pre_ping: bool = True, durable: bool = True) -> Engine:
    """An engine for ``url`` with the project's connection settings (see :func:`engine_kwargs`)."""
    url = normalize_url(url)
    kwargs = engine_kwargs(url, pre_ping=pre_ping, durable=durable)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:" and not read_only:  # a reader creates nothing
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    elif read_only:  # PostgreSQL refuses every write on these connections
        options = " ".join(filter(None, [kwargs["connect_args"].get("options"), "-c default_transaction_read_only=on"]))
        kwargs = {**kwargs, "connect_args": {**kwargs["connect_args"], "options": options}}
    engine = create_engine(url, json_serializer=jsonsafe.dumps, **kwargs)
    if is_sqlite(url):
        install_sqlite_pragmas(engine, writer=not read_only)
    return engine


class Database:
    """An engine and its session factory; ``session()`` is the one unit-of-work scope."""

    def __init__(self, url: str, *, pre_ping: bool = True, read_only: bool = False) -> None:
        """``pre_ping=False``: for a caller that retries every call on StoreUnavailable (see
        :func:`engine_kwargs`); it saves a round trip per transaction on hot paths.
        ``read_only=True``: for a process that must never write (the dashboard): every engine's
        connections refuse writes (SQLite ``query_only``, PostgreSQL ``default_transaction_read_only``),
        so the store's read functions serve it and a write fails."""
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, pre_ping=pre_ping, read_only=read_only)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL: non-durable transactions use connections made with synchronous_commit off
        # (a pool that opens its first connection when first used), instead of paying a
        # ``SET LOCAL`` round trip in every transaction. SQLite has one durability setting.
        self._fast_engine = (self.engine if is_sqlite(self.url) or read_only
                             else make_engine(self.url, pre_ping=pre_ping, durable=False))
        self._fast_sessions = sessionmaker(self._fast_engine, expire_on_commit=False)
        # SQLite: a second engine whose transactions take no write lock. PostgreSQL's MVCC
        # needs no such split.
        self._read_engine = (make_engine(self.url, read_only=True) if is_sqlite(self.url) and not read_only
                             else self.engine)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        self._kept = threading.local()  # fetch_all's connection, one per thread

    @contextlib.contextmanager
    def session(self, *, durable: bool = True) -> Iterator[Session]:
        """Commit on success, roll back on error, and turn connection failures into StoreUnavailable.

        ``durable=False`` (epoch rows, heartbeats) lets PostgreSQL acknowledge the commit before
        its WAL reaches disk: a database crash may forget the last fraction of a second of
        them, never corrupt anything, and each such write skips an fsync.
        """
        with self._scope(self._sessions if durable else self._fast_sessions) as session:
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only scope (on SQLite it never waits for the write lock)."""
        with self._scope(self._read_sessions) as session:
            yield session

    def fetch_all(self, statement: Executable) -> list[Row[Any]]:
        """Run one read on a connection this thread keeps open, in autocommit mode.

        For hot paths (a pruning check after every epoch): a pooled session would pay a
        checkout ping, BEGIN and COMMIT around the one SELECT, ~0.75 ms against ~0.15 ms on
        PostgreSQL. A failure drops the kept connection and raises StoreUnavailable, so the
        caller's retry reconnects. SQLite reads a local file and uses :meth:`read`.
        """
        if is_sqlite(self.url):
            with self.read() as session:
                return list(session.execute(statement).all())
        connection = getattr(self._kept, "connection", None)
        if connection is None:
            connection = self._read_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._kept.connection = connection
        try:
            return list(connection.execute(statement).all())
        except DBAPIError as exc:
            self._kept.connection = None
            with contextlib.suppress(Exception):
                connection.invalidate()
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc
            raise

    @contextlib.contextmanager
    def _scope(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        session = factory()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc
        except DBAPIError as exc:
            session.rollback()
            if exc.connection_invalidated:
                raise StoreUnavailable(f"database connection lost: {exc.orig}") from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Raise StoreUnavailable unless a trivial query succeeds."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not ready"
            raise StoreUnavailable(f"database unavailable: {exc}") from exc

    def dispose(self) -> None:
        connection = getattr(self._kept, "connection", None)
        if connection is not None:
            self._kept.connection = None
            with contextlib.suppress(Exception):
                connection.close()
        self.engine.dispose()
        self._fast_engine.dispose()
        self._read_engine.dispose()


# -- before a component starts: is the database there? -----------------------------------------


def _one_line(error: BaseException) -> str:
    """A driver's message on one line (psycopg's span several, with tabs)."""
    return " ".join(str(getattr(error, "orig", None) or error).split())


def _maintenance_url(url: str) -> Any:
    """The same server's ``postgres`` database (``template1`` when ``postgres`` is the one asked for)."""
    parsed = make_url(normalize_url(url))
    return parsed.set(database="template1" if parsed.database == "postgres" else "postgres")


def _server(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def _database_exists(url: str) -> bool | None:
    """Whether the server lists ``url``'s database; None when the server cannot be asked."""
    engine = create_engine(_maintenance_url(url), **engine_kwargs(url))
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                 {"name": make_url(url).database}).first()
        return found is not None
    except Exception:  # noqa: BLE001 - no maintenance database, no rights: we cannot tell
        return None
    finally:
        engine.dispose()


def check_database(url: str) -> None:
    """Raise :class:`DatabaseMissing` or :class:`StoreUnavailable` (one line, no secrets) unless
    ``url``'s database accepts a connection. For commands, before they start a component: a
    missing database is a setup step to name, not a traceback from the first query."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
        if not is_sqlite(url) and _database_exists(url) is False:
            raise DatabaseMissing(str(make_url(url).database), _server(url)) from None
        raise StoreUnavailable(f"cannot connect to the database: {_one_line(exc)}") from None
    finally:
        engine.dispose()


def create_database(url: str) -> bool:
    """Create ``url``'s PostgreSQL database when the server lacks it; True when it was created.
    A SQLite file is created by its first connection: nothing to do."""
    if is_sqlite(url) or _database_exists(url) is not False:
        return False
    engine = create_engine(_maintenance_url(url), isolation_level="AUTOCOMMIT", **engine_kwargs(url))
    try:
        with engine.connect() as conn:
            name = engine.dialect.identifier_preparer.quote(str(make_url(url).database))
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001 - no CREATEDB right, the server went away...
        raise StoreUnavailable(f"cannot create the database: {_one_line(exc)}") from None
    finally:
        engine.dispose()
    return True
