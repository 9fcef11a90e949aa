"""Shared fixtures: real backends (SQLite file, PostgreSQL, Redis), never mocks.

PostgreSQL and Redis are expected on 127.0.0.1 (override with REGSEARCH_TEST_PG_URL /
REGSEARCH_TEST_REDIS_URL). In CI (CI=true) a missing service fails the test; elsewhere it skips
with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from regsearch.config import Settings
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get("REGSEARCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REGSEARCH_TEST_REDIS_URL", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error.__class__.__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run the service tests for real")
    pytest.skip(message)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def sqlite_settings(data_dir: Path) -> Settings:
    """Embedded defaults inside a fresh data directory (SQLite + filesystem broker)."""
    settings = Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)
    settings.ensure_dirs()
    return settings


@pytest.fixture
def sqlite_db(sqlite_settings: Settings) -> Iterator[Database]:
    upgrade(sqlite_settings.sqlalchemy_url)
    db = Database(sqlite_settings.sqlalchemy_url)
    yield db
    db.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"regsearch_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection error means "not here"
        service_missing("PostgreSQL", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    from regsearch.store.studies import optuna_storage

    optuna_storage.cache_clear()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    db = Database(pg_url)
    yield db
    db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Database:
    """The same contract on both backends, as Optuna tests its storages."""
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


@pytest.fixture
def redis_url() -> str:
    """A Redis database number of its own, flushed before use."""
    import redis

    db_index = 1 + (os.getpid() % 14)
    url = f"{REDIS_URL}/{db_index}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", exc)
    return url


# -- S3-compatible object storage: moto's server mode, a real HTTP server on 127.0.0.1 ----------
@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = "regsearch-test"
    secret_access_key: str = "regsearch-test-secret"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def settings(self, base: Settings, bucket: str, prefix: str = "weights") -> Settings:
        """``base`` with its trained weights in ``s3://bucket/prefix`` on this server."""
        return base.model_copy(update={
            "artifact_url": f"s3://{bucket}/{prefix}", "s3_endpoint_url": self.endpoint_url, "s3_region": self.region,
            "s3_access_key_id": self.access_key_id, "s3_secret_access_key": SecretStr(self.secret_access_key)})


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server (``ThreadedMotoServer``) on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    from regsearch.cli.launcher import free_port

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Server(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the moto server."""
    name = f"regsearch-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
