"""Alembic environment: the project's own version table, beside Optuna's ``alembic_version``."""

from __future__ import annotations

from alembic import context

from regsearch.store.db import make_engine
from regsearch.store.models import Base

VERSION_TABLE = "regsearch_alembic_version"

config = context.config
url = config.get_main_option("sqlalchemy.url")
connection = config.attributes.get("connection")


def _run(conn: object) -> None:
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=conn.dialect.name == "sqlite",  # type: ignore[attr-defined]
        # Optuna's tables live in the same database; autogenerate must leave them alone.
        include_name=lambda name, type_, _parent: type_ != "table" or name.startswith("regsearch_"),
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
