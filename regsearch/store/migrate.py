"""Apply the project's Alembic migrations (``regsearch db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from regsearch.store.db import check_database, normalize_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is an ini parser: a '%' in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``, Optuna's tables included.

    Raises ``DatabaseMissing`` / ``StoreUnavailable`` (one line, naming the database) before
    Alembic starts, instead of a driver traceback from inside a migration.
    """
    from regsearch.store.studies import optuna_storage

    check_database(url)
    command.upgrade(alembic_config(url), revision)
    # Optuna creates (and stamps) its own schema; doing it here keeps concurrent first
    # requests from racing on CREATE TABLE / CREATE TYPE.
    # Return its connections: processes that migrate and then fork (``regsearch worker``) must
    # not hand open sockets to their children; the pool reconnects on next use.
    optuna_storage(url).engine.dispose()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": "regsearch_alembic_version"})
            return ctx.get_current_revision()
    finally:
        engine.dispose()
