"""Run a job through the full service (API, coordinator, workers as processes) and measure it.

Backends: PostgreSQL + Redis on 127.0.0.1 when reachable ("production"), else the embedded
SQLite + filesystem queue ("embedded"); :func:`pick_backend` says which and why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from regsearch.cli.launcher import Supervisor, free_port, plan
from regsearch.client import Client
from regsearch.config import Settings
from regsearch.domain.states import FINAL_JOB_STATES
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade
from regsearch.store.models import Epoch, Job, Trial, as_utc

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/14"




def production_reachable() -> str | None:
    """None when PostgreSQL and Redis answer, else why not."""
    import redis
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "use the embedded backend"
        return f"{type(exc).__name__}: {exc}"
    return None


def pick_backend(requested: str = "auto") -> tuple[str, str]:
    """("production" | "embedded", a sentence saying why)."""
    if requested != "auto":
        return requested, f"{requested} (asked for)"
    why_not = production_reachable()
    if why_not is None:
        return "production", "PostgreSQL + Redis on 127.0.0.1"
    return "embedded", f"SQLite + filesystem queue (PostgreSQL/Redis not reachable: {why_not})"


@contextlib.contextmanager
def fresh_database(backend: str, data_dir: Path) -> Iterator[tuple[str | None, str | None]]:
    """(database_url, broker_url) for a new, empty database; dropped afterwards."""
    if backend == "embedded":
        yield None, None
        return
    import redis
    import sqlalchemy as sa

    name = f"regsearch_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    redis.Redis.from_url(REDIS).flushdb()
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", REDIS
    finally:
        from regsearch.store.studies import optuna_storage

        optuna_storage.cache_clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class JobRun:
    wall_s: float
    training_s: float  # sum over trials of their epochs' seconds
    trials: int
    states: dict[str, int]
    best_val_acc: float | None = None  # the search's best complete trial: what it found
    distinct: float | None = None  # share of the search's trials with a configuration of their own
    packed: float | None = None  # share of the trials that trained in a pack (see packed_share)

    def overhead_ms_per_trial(self, workers: int) -> float:
        return 1000 * (workers * self.wall_s - self.training_s) / max(1, self.trials)

    def efficiency(self, workers: int) -> float:
        return (self.training_s / workers) / self.wall_s


@dataclass
class Service:
    """A running service: its settings, a client of its API, a database handle, its processes."""

    settings: Settings
    client: Client
    db: Database
    supervisor: Supervisor


@contextlib.contextmanager
def running_service(*, workers: int, backend: str, data_dir: Path, **settings_overrides: Any) -> Iterator[Service]:
    """Start the service on a fresh database, wait until its API answers, and stop it afterwards."""
    with fresh_database(backend, data_dir) as (database_url, broker_url):
        port = free_port()
        settings = Settings(data_dir=data_dir, database_url=database_url, broker_url=broker_url,
                            api_url=f"http://127.0.0.1:{port}", **settings_overrides)
        upgrade(settings.sqlalchemy_url)
        supervisor = Supervisor(settings, plan(settings, workers=workers, api_port=port, dashboard_port=None),
                                str(data_dir / "logs"))
        supervisor.start()
        db = Database(settings.sqlalchemy_url)
        try:
            with Client(settings) as client:
                while not client.ready():
                    if supervisor.dead():
                        raise RuntimeError(f"a component died: {supervisor.dead()}; logs in {data_dir / 'logs'}")
                    time.sleep(0.2)
                yield Service(settings, client, db, supervisor)
        finally:
            db.dispose()
            supervisor.stop()


def warm_up(service: Service, spec: dict[str, Any], workers: int) -> None:
    """One throw-away job: imports, dataset generation and caches are not what we measure."""
    warm = dict(spec, name="warm-up", budget={"n_trials": workers, "parallelism": workers})
    wait_until_ended(service.db, service.client.submit(warm)["id"], service.supervisor)


def run_job(spec: dict[str, Any], *, workers: int, backend: str, data_dir: Path, **settings_overrides: Any) -> JobRun:
    """Start the service, warm it (one throw-away job), then time ``spec`` from submit to the
    job's recorded end."""
    with running_service(workers=workers, backend=backend, data_dir=data_dir, **settings_overrides) as service:
        warm_up(service, spec, workers)
        submitted = time.time()
        job_id = service.client.submit(spec)["id"]
        wall = wait_until_ended(service.db, job_id, service.supervisor).timestamp() - submitted
        with service.db.read() as session:
            rows = session.execute(
                select(Trial.state, Epoch.seconds).join(Epoch, Epoch.trial_id == Trial.id, isouter=True)
                .where(Trial.job_id == job_id)
            ).all()
            states_rows = session.execute(
                select(Trial.number, Trial.state, Trial.params, Trial.metrics, Trial.confirm_of, Trial.worker,
                       Trial.started_at, Trial.finished_at)
                .where(Trial.job_id == job_id)).all()
    training = sum(seconds or 0.0 for _, seconds in rows)
    states: dict[str, int] = {}
    for row in states_rows:
        states[row.state] = states.get(row.state, 0) + 1
    search = [row for row in states_rows if row.confirm_of is None]
    return JobRun(wall_s=wall, training_s=training, trials=len(states_rows), states=states,
                  best_val_acc=best_of(r.metrics for r in search if r.state == "complete"),
                  distinct=distinct_share([r.params for r in search]), packed=packed_share(states_rows))


def best_of(metrics: Any) -> float | None:
    values = [m["val_acc"] for m in metrics if m and isinstance(m.get("val_acc"), (int, float))]
    return max(values) if values else None


def distinct_share(params: list[dict[str, Any]]) -> float | None:
    """Distinct configurations over trials (1.0: no configuration trained twice)."""
    if not params:
        return None
    return len({json.dumps(p, sort_keys=True) for p in params}) / len(params)


def packed_share(rows: Any) -> float | None:
    """The share of trials that trained in a pack: that ran at the same time as another trial in
    the same worker process (a process trains one thing at a time, so only a pack's members overlap
    there). Rows need ``worker``, ``started_at`` and ``finished_at``."""
    ran = [r for r in rows if r.worker and r.started_at and r.finished_at]
    if not ran:
        return None
    packed = {i for i, a in enumerate(ran) for j, b in enumerate(ran)
              if i != j and a.worker == b.worker and a.started_at < b.finished_at and b.started_at < a.finished_at}
    return len(packed) / len(ran)


def wait_until_ended(db: Database, job_id: str, supervisor: Supervisor) -> dt.datetime:
    """Until the job ends; returns when it ended, as the coordinator recorded it (``finished_at``).

    The end is the service's own record, so the bench polls rarely: a poll every 50 ms cost
    the 2-core machine being measured ~0.2 s of CPU per 7 s job, and the poll interval itself
    added up to 50 ms to the wall time.
    """
    while True:
        with db.read() as session:
            status, finished_at = session.execute(
                select(Job.status, Job.finished_at).where(Job.id == job_id)).one()
        if status in FINAL_JOB_STATES:
            ended = as_utc(finished_at)
            assert ended is not None, f"job {job_id} is {status} without finished_at"
            return ended
        if supervisor.dead():
            raise RuntimeError(f"a component died: {supervisor.dead()}")
        time.sleep(0.5)
