"""The model families workers offer, as they published them (table ``regsearch_families``).

One row per (worker, family): the worker's Celery node name (``regsearch-<pid>@<host>``), the
family's name, ``source`` (``builtin`` | ``plugin``), its knobs as JSON schema and its
``slots_doc``. A worker replaces its rows when it is ready (:func:`publish`), refreshes their
``seen_at`` every :data:`REFRESH_S` while it runs (:func:`touch`) and ages them out when it stops
(:func:`withdraw`). A family is *offered* while some worker's row of it was seen within
:data:`LIVE_S` (a killed worker's rows age out). Dead rows stay as the record of a family's
knobs, so jobs accepted earlier still read back (``offered(live_s=None)``), until a worker
publishes the same family again. Torch-free: the API and the coordinator read it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select, update

from regsearch.store.db import Database
from regsearch.store.models import PublishedFamily, as_utc, utcnow

REFRESH_S = 30.0  # a running worker refreshes its rows this often
LIVE_S = 120.0  # ... and a family is offered while a row of it is younger than this


def publish(db: Database, worker: str, families: Iterable[Mapping[str, Any]]) -> int:
    """Replace ``worker``'s rows with ``families`` (``{name, knobs, slots_doc, source}``)."""
    now = utcnow()
    rows = [
        PublishedFamily(worker=worker, name=str(f["name"]), source=str(f["source"]), knobs=dict(f["knobs"]),
                        slots_doc=str(f.get("slots_doc") or ""), seen_at=now)
        for f in families
    ]
    with db.session() as session:
        session.execute(delete(PublishedFamily).where(PublishedFamily.worker == worker))
        # Other workers' dead rows of these families are superseded by this one's (the table keeps
        # one record per family that no live worker offers, so old jobs still read back).
        session.execute(delete(PublishedFamily).where(
            PublishedFamily.name.in_([row.name for row in rows]),
            PublishedFamily.seen_at < now - dt.timedelta(seconds=LIVE_S)))
        session.add_all(rows)
    return len(rows)


def touch(db: Database, worker: str) -> int:
    """Refresh ``worker``'s rows; the number refreshed (0: they are gone, publish again)."""
    with db.session() as session:
        result = session.execute(
            update(PublishedFamily).where(PublishedFamily.worker == worker).values(seen_at=utcnow())
        )
        return int(result.rowcount or 0)


WITHDRAWN_AT = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def withdraw(db: Database, worker: str) -> None:
    """``worker`` is stopping: its rows stop being offered at once (they are kept as records)."""
    with db.session() as session:
        session.execute(update(PublishedFamily).where(PublishedFamily.worker == worker).values(seen_at=WITHDRAWN_AT))


def offered(db: Database, *, live_s: float | None = LIVE_S) -> dict[str, dict[str, Any]]:
    """``{name: {name, knobs, slots_doc, source, workers}}`` of the families live workers offer.

    ``live_s=None``: every published row, however old (to read back a job accepted earlier).
    When workers disagree on a family's schema, the most recently seen one wins.
    """
    statement = select(PublishedFamily).order_by(PublishedFamily.seen_at)
    if live_s is not None:
        statement = statement.where(PublishedFamily.seen_at >= utcnow() - dt.timedelta(seconds=live_s))
    found: dict[str, dict[str, Any]] = {}
    with db.read() as session:
        for row in session.scalars(statement):
            entry = found.setdefault(row.name, {"workers": []})
            entry.update(name=row.name, knobs=row.knobs, slots_doc=row.slots_doc, source=row.source,
                         seen_at=as_utc(row.seen_at))
            entry["workers"].append(row.worker)
    return found


def catalog(db: Database, *, live_s: float | None = LIVE_S, ttl_s: float = 2.0) -> Any:
    """A ``PublishedCatalog`` of the plugin families published in ``db`` (live ones; None: all).

    For ``regsearch.domain.families.use_catalog`` / ``set_default_catalog``: the API validates
    submissions against the live ones; the coordinator reads back jobs accepted earlier with all.
    """
    from regsearch.domain.published import PublishedCatalog

    return PublishedCatalog(lambda: offered(db, live_s=live_s), ttl_s=ttl_s)
