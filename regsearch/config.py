"""One typed configuration for every component, read from ``REGSEARCH_*`` variables or ``.env``.

Resolved once through :func:`get_settings` (cached); tests call ``get_settings.cache_clear()``
after changing the environment, or build a :class:`Settings` directly and pass it to factories.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class Settings(BaseSettings):
    """Everything a component needs to know about its surroundings."""

    model_config = SettingsConfigDict(env_prefix="REGSEARCH_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path(".regsearch"), description="datasets, SQLite file, queue")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite by default")
    broker_url: str | None = Field(default=None, description="Celery broker; embedded by default")
    api_token: str | None = Field(default=None, description="bearer token for every non-health route")
    api_url: str = Field(default="http://127.0.0.1:8000", description="where the CLI finds the API")
    # Trained weights (regsearch.store.artifacts): a folder in the data directory by default.
    artifact_url: str | None = Field(default=None, description="s3://bucket/prefix or file:///path; <data dir>/artifacts by default")
    s3_endpoint_url: str | None = Field(default=None, description="an S3-compatible server (MinIO, Ceph...); AWS when unset")
    s3_region: str | None = Field(default=None, description="the bucket's region; boto3's default chain when unset")
    s3_access_key_id: str | None = Field(default=None, description="with s3_secret_access_key; boto3's chain when unset")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="never printed")

    # Reliability knobs (docs/operations.md explains how they relate).
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    heartbeat_grace_s: float = Field(default=60.0, gt=0)
    coordinator_poll_s: float = Field(default=0.5, gt=0)
    resend_after_s: float = Field(default=30.0, gt=0, description="re-send a queued trial after")
    coordinator_lease_s: float = Field(default=10.0, gt=0, description="a coordinator's lease on a job: "
                                       "another adopts the job within two of these after its owner stops renewing")
    trainer_report_timeout_s: float = Field(default=1800.0, gt=0, description="a trainer plugin that has not "
                                            "reported an epoch for this long fails its trial as stalled")
    prepare_ahead: int = Field(default=1, ge=0, le=64, description="trials sent per job beyond budget.parallelism: they wait in the broker, and the claim enforces parallelism")
    visibility_timeout_s: int = Field(default=3600, ge=1, description="Redis redelivery timeout")
    max_body_bytes: int = Field(default=1_000_000, ge=1024)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to a SQLite file inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'regsearch.db'}"

    @property
    def celery_broker_url(self) -> str:
        """The broker URL, defaulting to kombu's filesystem transport in the data directory."""
        return self.broker_url or "filesystem://"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    @property
    def artifacts_url(self) -> str:
        """Where trained weights go: ``artifact_url``, else the ``artifacts`` folder in the data dir."""
        return self.artifact_url or (self.data_dir / "artifacts").as_uri()

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    def ensure_dirs(self) -> None:
        """Create the data directory and the embedded broker's folders."""
        for path in (self.data_dir, self.datasets_dir, *(self.queue_dir / d for d in ("in", "processed", "control"))):
            path.mkdir(parents=True, exist_ok=True)


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
