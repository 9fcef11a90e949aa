from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regsearch.config import Settings
from tests.services.stack import Stack, running_stack


@pytest.fixture(params=["embedded", "production"])
def backend_settings(request: pytest.FixtureRequest, data_dir: Path) -> Settings:
    """Embedded (SQLite + filesystem broker) and production (PostgreSQL + Redis) settings."""
    if request.param == "embedded":
        return Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)
    pg_url = request.getfixturevalue("pg_url")
    redis_url = request.getfixturevalue("redis_url")
    return Settings(data_dir=data_dir, database_url=pg_url, broker_url=redis_url, api_token=None)


@pytest.fixture
def embedded_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)


@pytest.fixture
def stack(backend_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(backend_settings, tmp_path / "logs") as running:
        yield running
