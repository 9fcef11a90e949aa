"""Which coordinator drives which job: leases in the database, fenced writes.

Several ``regsearch coordinator`` processes may run against one database. Each active job is
driven by one of them, the holder of its row in ``regsearch_job_owners``:

- a coordinator renews the leases it holds every ``lease_s / 3`` and takes jobs whose lease is
  missing or expired, up to its fair share (the active jobs over the coordinators seen within
  one lease period, ``regsearch_coordinators``), and hands back what it holds beyond that share;
  so a dead or cut-off owner's jobs are adopted within two lease periods, and jobs spread over
  the live coordinators;
- every change of owner adds one to the row's ``token`` (the fencing token);
- while a coordinator works on a job (:func:`fenced`), the first write of each transaction on any
  engine of the process first reads the job's lease row ``FOR SHARE`` and goes on only if it
  still holds this owner and token: a coordinator that lost the job (cut off past its lease, or
  paused) gets :class:`FencedOut` and writes nothing, and a new owner's take-over waits until a
  transaction that passed the check has committed. Times are the database's clock, never a
  host's, so hosts' clocks may disagree.

On SQLite (one host, the embedded mode) the same rows apply; SQLite has no ``FOR SHARE`` and
serialises writers anyway.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import math
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import Pool

from regsearch.store.db import Database, is_sqlite
from regsearch.store.models import CoordinatorSeen, JobOwner, utcnow

log = logging.getLogger("regsearch.coordinator")

FORGET_COORDINATOR_AFTER = 10  # lease periods after which a silent coordinator's row is deleted
_LEASE_TABLES = ("regsearch_job_owners", "regsearch_coordinators")
_WRITES = ("INSERT", "UPDATE", "DELETE")
_CHECKED = "regsearch_fence_checked"

_fence: contextvars.ContextVar[tuple[str, str, int] | None] = contextvars.ContextVar("regsearch_fence", default=None)


class FencedOut(RuntimeError):
    """This coordinator no longer holds the job's lease: the write was not made."""

    def __init__(self, job_id: str, owner: str, token: int) -> None:
        super().__init__(f"job {job_id}: lease token {token} of {owner} is no longer current")
        self.job_id = job_id


def owner_name() -> str:
    """This process's name as an owner: host, pid and a random part (pids repeat across hosts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def fenced(job_id: str, owner: str, token: int) -> Iterator[None]:
    """Every write made inside commits only while (owner, token) holds ``job_id``'s lease."""
    install_fence()
    reset = _fence.set((job_id, owner, token))
    try:
        yield
    finally:
        _fence.reset(reset)


_installed = False


def install_fence() -> None:
    """Listen on every engine of the process (the store's and Optuna's record alike), once."""
    global _installed
    if _installed:
        return
    event.listen(Engine, "before_cursor_execute", _check_fence)
    event.listen(Engine, "commit", _transaction_over)
    event.listen(Engine, "rollback", _transaction_over)
    _installed = True


def _transaction_over(conn: Any) -> None:
    with contextlib.suppress(Exception):  # an invalidated connection is discarded anyway
        conn.info.pop(_CHECKED, None)


def _check_fence(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    fence = _fence.get()
    if fence is None or conn.info.get(_CHECKED) == fence:
        return
    if statement.lstrip()[:6].upper() not in _WRITES or any(table in statement for table in _LEASE_TABLES):
        return
    job_id, owner, token = fence
    if conn.dialect.name == "sqlite":
        sql = "SELECT 1 FROM regsearch_job_owners WHERE job_id = ? AND owner = ? AND token = ?"
    else:  # the share lock makes a take-over wait until this transaction ends
        sql = "SELECT 1 FROM regsearch_job_owners WHERE job_id = %s AND owner = %s AND token = %s FOR SHARE"
    check = cursor.connection.cursor()
    try:
        check.execute(sql, (job_id, owner, token))
        held = check.fetchone() is not None
    finally:
        check.close()
    if not held:
        raise FencedOut(job_id, owner, token)
    conn.info[_CHECKED] = fence


_idle_limit_ms: list[int] = []


def _limit_idle(dbapi_connection: Any, _record: Any) -> None:
    if _idle_limit_ms and type(dbapi_connection).__module__.startswith("psycopg"):
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {_idle_limit_ms[0]:d}")
        dbapi_connection.commit()


def limit_idle_transactions(seconds: float) -> None:
    """PostgreSQL ends this process's transactions left open longer than ``seconds``.

    A coordinator cut off in the middle of a fenced transaction holds the lease row's share
    lock, and the server notices a silent client only after TCP's keepalive (hours): the take-over
    would wait that long. Ending such a transaction after one lease period frees the row.
    """
    _idle_limit_ms[:] = [max(1000, int(seconds * 1000))]
    if not event.contains(Pool, "connect", _limit_idle):
        event.listen(Pool, "connect", _limit_idle)


class JobLeases:
    """One coordinator's leases: :meth:`refresh` renews, adopts and hands back; ``held`` is
    job id -> fencing token."""

    def __init__(self, db: Database, lease_s: float, owner: str | None = None) -> None:
        self.db = db
        self.lease_s = lease_s
        self.owner = owner or owner_name()
        limit_idle_transactions(lease_s)
        self.held: dict[str, int] = {}
        self.others: set[str] = set()  # active jobs another coordinator held at the last refresh
        self.live = 1
        self._last = -math.inf

    def due(self, active_ids: set[str], now_s: float) -> bool:
        """A refresh is due every lease_s / 3, and at once for an active job nobody was seen holding."""
        return now_s - self._last >= self.lease_s / 3 or bool(active_ids - set(self.held) - self.others)

    def refresh(self, active_ids: set[str], now_s: float) -> dict[str, int]:
        """Renew, adopt up to the fair share, hand back the surplus; returns the leases held now."""
        self._last = now_s
        with self.db.session() as session:
            now = self._now(session)
            until = now + dt.timedelta(seconds=self.lease_s)
            self._seen(session, now)
            self.live = max(1, session.scalar(sa.select(sa.func.count()).select_from(CoordinatorSeen).where(
                CoordinatorSeen.seen_at >= now - dt.timedelta(seconds=self.lease_s))) or 1)
            # Renew what is still ours (a row another took over is no longer ours, whatever we thought).
            session.execute(sa.update(JobOwner).where(JobOwner.owner == self.owner).values(expires_at=until))
            rows = session.execute(sa.select(JobOwner.job_id, JobOwner.owner, JobOwner.token, JobOwner.expires_at)
                                   .where(JobOwner.job_id.in_(active_ids | set(self.held)))).all()
        held = {row.job_id: row.token for row in rows if row.owner == self.owner}
        ended = set(held) - active_ids
        for job_id in ended:
            self._drop(job_id, held.pop(job_id))
        fair = math.ceil(len(active_ids) / self.live)
        surplus = len(held) - fair
        if surplus > 0 and self.live > 1:
            for job_id in sorted(held, key=held.__getitem__, reverse=True)[:surplus]:
                self._hand_back(job_id, held.pop(job_id))
        taken = {row.job_id: row for row in rows if row.owner != self.owner}
        free = sorted(job_id for job_id in active_ids - set(held)
                      if job_id not in taken or _utc(taken[job_id].expires_at) < now)
        for job_id in free[: max(0, fair - len(held))]:
            token = self._adopt(job_id, until, taken.get(job_id))
            if token is not None:
                held[job_id] = token
        self.others = active_ids - set(held)
        for job_id, token in held.items():
            if self.held.get(job_id) != token:
                log.info("job %s: adopted by %s (lease token %d)", job_id, self.owner, token)
        self.held = held
        return dict(held)

    def release_all(self) -> None:
        """A clean stop: hand every lease back and leave the list of coordinators."""
        with contextlib.suppress(Exception):
            for job_id, token in list(self.held.items()):
                self._hand_back(job_id, token)
            with self.db.session() as session:
                session.execute(sa.delete(CoordinatorSeen).where(CoordinatorSeen.owner == self.owner))
        self.held.clear()

    def lost(self, job_id: str) -> None:
        self.held.pop(job_id, None)

    # -- one row each -----------------------------------------------------------------------
    def _now(self, session: Any) -> dt.datetime:
        if is_sqlite(self.db.url):
            return utcnow()
        return _utc(session.scalar(sa.select(sa.func.now())))

    def _seen(self, session: Any, now: dt.datetime) -> None:
        updated = session.execute(sa.update(CoordinatorSeen).where(CoordinatorSeen.owner == self.owner)
                                  .values(seen_at=now)).rowcount
        if not updated:
            session.add(CoordinatorSeen(owner=self.owner, seen_at=now))
        session.execute(sa.delete(CoordinatorSeen).where(
            CoordinatorSeen.seen_at < now - dt.timedelta(seconds=FORGET_COORDINATOR_AFTER * self.lease_s)))

    def _adopt(self, job_id: str, until: dt.datetime, previous: Any) -> int | None:
        """Take a job whose lease is missing or expired; None when another was quicker."""
        try:
            with self.db.session() as session:
                if previous is None:
                    session.add(JobOwner(job_id=job_id, owner=self.owner, token=1, expires_at=until))
                    session.flush()
                    return 1
                now = self._now(session)
                taken = session.execute(
                    sa.update(JobOwner)
                    .where(JobOwner.job_id == job_id, JobOwner.token == previous.token, JobOwner.expires_at < now)
                    .values(owner=self.owner, token=JobOwner.token + 1, expires_at=until)).rowcount
                if taken:
                    log.info("job %s: lease of %s expired or handed back; taking it over", job_id, previous.owner)
                return previous.token + 1 if taken else None
        except IntegrityError:  # another coordinator inserted the row first
            return None

    def _hand_back(self, job_id: str, token: int) -> None:
        with self.db.session() as session:
            session.execute(sa.update(JobOwner).where(JobOwner.job_id == job_id, JobOwner.owner == self.owner,
                                                      JobOwner.token == token)
                            .values(expires_at=self._now(session) - dt.timedelta(seconds=1)))
        log.info("job %s: handed back by %s (more than its share)", job_id, self.owner)

    def _drop(self, job_id: str, token: int) -> None:
        with self.db.session() as session:
            session.execute(sa.delete(JobOwner).where(JobOwner.job_id == job_id, JobOwner.owner == self.owner,
                                                      JobOwner.token == token))


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
