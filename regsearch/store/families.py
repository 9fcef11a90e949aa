"""The model families workers offer, as they published them (table ``regsearch_families``).

One row per (worker, family): the worker's Celery node name (``regsearch-<pid>@<host>``), the
family's name, ``source`` (``builtin`` | ``plugin``), its knobs as JSON schema and its
``slots_doc``. A worker replaces its rows when it is ready (:func:`publish`), refreshes their
``seen_at`` every :data:`REFRESH_S` while it runs (:func:`touch`) and ages them out when it stops
(:func:`withdraw`). A family is *offered* while some worker's row of it was seen within
:data:`LIVE_S` (a killed worker's rows age out). Dead rows stay as the record of a family's
knobs, so jobs accepted earlier still read back (``offered(live_s=None)``), until a worker
publishes the same family again. Torch-free: the API and the coordinator read it.

``auto``'s row also carries the worker's installed networks (``{name: {entry_point, error}}``,
``error`` when its entry point does not load), inside ``knobs`` under :data:`NETWORKS_KEY` (a
JSON-schema extension keyword: no new column); :func:`offered` takes it out again as
``networks``. A row without it (a worker of an earlier version) leaves the networks unknown.

A worker's trainers (``regsearch.domain.trainers``) are rows of the same table whose ``source``
is ``trainer``: ``knobs`` holds the trainer's ``Options`` as JSON schema, ``slots_doc`` its
description. :func:`offered` leaves them out; :func:`offered_trainers` reads them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select, update

from regsearch.domain.trainers import SOURCE as TRAINER_SOURCE  # a trainer's row, not a family's
from regsearch.store.db import Database
from regsearch.store.models import PublishedFamily, as_utc, utcnow

REFRESH_S = 30.0  # a running worker refreshes its rows this often
LIVE_S = 120.0  # ... and a family is offered while a row of it is younger than this
NETWORKS_KEY = "x-regsearch-networks"  # where auto's row keeps the worker's networks, in knobs


def publish(db: Database, worker: str, families: Iterable[Mapping[str, Any]]) -> int:
    """Replace ``worker``'s rows with ``families`` (``{name, knobs, slots_doc, source[, networks]}``)."""
    now = utcnow()
    rows = [
        PublishedFamily(worker=worker, name=str(f["name"]), source=str(f["source"]), knobs=_packed(f),
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


def _packed(family: Mapping[str, Any]) -> dict[str, Any]:
    knobs = {k: v for k, v in dict(family["knobs"]).items() if k != NETWORKS_KEY}
    if family.get("networks") is not None:
        knobs[NETWORKS_KEY] = {str(name): {"entry_point": str(net.get("entry_point") or ""),
                                           "error": None if net.get("error") is None else str(net["error"])}
                               for name, net in dict(family["networks"]).items()}
    return knobs


def _merge_networks(entry: dict[str, Any], published: Any) -> None:
    """Every worker's networks in one: a network loads if it loads on any; unknown if any is."""
    if "networks" in entry and entry["networks"] is None:
        return
    if not isinstance(published, Mapping):
        entry["networks"] = None  # a worker that did not say: any network may be installed there
        return
    merged = entry.setdefault("networks", {})
    for name, net in published.items():
        if not isinstance(net, Mapping):
            continue
        if name not in merged or merged[name].get("error") or not net.get("error"):
            merged[name] = {"entry_point": net.get("entry_point"), "error": net.get("error")}


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
    """``{name: {name, knobs, slots_doc, source, workers, networks}}`` of the families live workers offer.

    ``networks`` (``auto``): ``{name: {entry_point, error}}``, the networks some worker has (that
    loads there when one of them does); None when a worker did not publish them (unknown).

    ``live_s=None``: every published row, however old (to read back a job accepted earlier).
    When workers disagree on a family's schema, the most recently seen one wins.
    """
    statement = select(PublishedFamily).where(PublishedFamily.source != TRAINER_SOURCE).order_by(PublishedFamily.seen_at)
    if live_s is not None:
        statement = statement.where(PublishedFamily.seen_at >= utcnow() - dt.timedelta(seconds=live_s))
    found: dict[str, dict[str, Any]] = {}
    with db.read() as session:
        for row in session.scalars(statement):
            entry = found.setdefault(row.name, {"workers": []})
            knobs = dict(row.knobs or {})
            networks = knobs.pop(NETWORKS_KEY, None)
            entry.update(name=row.name, knobs=knobs, slots_doc=row.slots_doc, source=row.source,
                         seen_at=as_utc(row.seen_at))
            entry["workers"].append(row.worker)
            if row.name == "auto":
                _merge_networks(entry, networks)
    return found


def offered_trainers(db: Database, *, live_s: float = LIVE_S) -> dict[str, dict[str, Any]]:
    """``{name: {name, options (JSON schema), doc, workers}}`` of the trainer plugins live workers offer."""
    statement = (select(PublishedFamily).where(PublishedFamily.source == TRAINER_SOURCE)
                 .where(PublishedFamily.seen_at >= utcnow() - dt.timedelta(seconds=live_s))
                 .order_by(PublishedFamily.seen_at))
    found: dict[str, dict[str, Any]] = {}
    with db.read() as session:
        for row in session.scalars(statement):
            entry = found.setdefault(row.name, {"workers": []})
            entry.update(name=row.name, options=dict(row.knobs or {}), doc=row.slots_doc)
            entry["workers"].append(row.worker)
    return found


def catalog(db: Database, *, live_s: float | None = LIVE_S, ttl_s: float = 2.0) -> Any:
    """A ``PublishedCatalog`` of the plugin families published in ``db`` (live ones; None: all).

    Passed to a spec's validation (``regsearch.domain.families.validation_context``): the API
    validates submissions against the live ones; the coordinator and the dashboard read back jobs
    accepted earlier with all.
    A live catalog also answers ``networks()``: what live workers published with ``auto`` (None:
    unknown), which ``auto``'s ``model.network`` is checked against at submit; one of every
    row, however old, answers None (a job accepted earlier reads back whatever is installed now).
    """
    from regsearch.domain.published import PublishedCatalog

    class Catalog(PublishedCatalog):
        def __init__(self) -> None:
            self._networks: dict[str, Any] | None = None
            super().__init__(self._read, ttl_s=ttl_s)

        def _read(self) -> dict[str, dict[str, Any]]:
            rows = offered(db, live_s=live_s)
            self._networks = rows["auto"].get("networks") if "auto" in rows else None
            return rows

        def networks(self) -> dict[str, Any] | None:
            self.rows()  # read again when older than ttl_s
            return None if live_s is None else self._networks

        def trainers(self) -> dict[str, Any] | None:
            # a job accepted earlier reads back whichever trainers are installed now: unchecked
            return None if live_s is None else offered_trainers(db, live_s=live_s)

    return Catalog()
