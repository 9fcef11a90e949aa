"""The artifact store: where a complete trial's trained weights (safetensors files) are kept.

One small interface, :class:`ArtifactStore` (``put``/``get``/``delete``/``exists`` of bytes under a
key), with two implementations chosen by ``REGSEARCH_ARTIFACT_URL``
(:attr:`regsearch.config.Settings.artifacts_url`):

- a folder (``file:///path``, or nothing set: ``<data dir>/artifacts``): one file per key, written
  to a temporary name and renamed, so a reader never sees half a file;
- S3-compatible object storage (``s3://bucket/prefix``) through boto3 (the ``s3`` extra), with
  ``REGSEARCH_S3_ENDPOINT_URL`` for a server other than AWS (MinIO, Ceph, moto) and the
  credentials from ``REGSEARCH_S3_ACCESS_KEY_ID``/``REGSEARCH_S3_SECRET_ACCESS_KEY`` or boto3's
  own chain. The bucket must exist.

Keys are ``<job id>/<trial number>.safetensors`` (:func:`weights_key`). Torch-free: the API serves
a file's bytes as they are; only the worker (which writes them) and ``load_model`` read tensors.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from regsearch.config import Settings

__all__ = ["ArtifactNotFound", "ArtifactStore", "ArtifactStoreUnavailable", "LocalArtifactStore",
           "S3ArtifactStore", "open_artifact_store", "weights_key"]

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class ArtifactNotFound(KeyError):
    """No artifact under that key (never written, or deleted)."""


class ArtifactStoreUnavailable(RuntimeError):
    """The store could not be reached or refused the operation (the API answers 503)."""


class ArtifactStore(Protocol):
    """Bytes under a key. ``delete`` of a missing key is not an error."""

    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


def weights_key(job_id: str, number: int) -> str:
    """Where trial ``number`` of job ``job_id`` keeps its best-validation weights."""
    return check_key(f"{job_id}/{int(number)}.safetensors")


def check_key(key: str) -> str:
    """A key is relative, of plain segments (no ``..``, no separators but ``/``): a key can never
    name anything outside the store's folder or prefix."""
    parts = key.split("/")
    if not key or not all(_SEGMENT.match(part) for part in parts):
        raise ValueError(f"artifact key {key!r} is not a relative path of plain names")
    return key


class LocalArtifactStore:
    """One file per key under ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            try:
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)  # atomic: readers see the old file or the whole new one
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            raise ArtifactStoreUnavailable(f"cannot write {key} under {self.root}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(key) from None
        except OSError as exc:
            raise ArtifactStoreUnavailable(f"cannot read {key} under {self.root}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise ArtifactStoreUnavailable(f"cannot delete {key} under {self.root}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3ArtifactStore:
    """Objects ``<prefix>/<key>`` in ``bucket`` of an S3-compatible server (boto3, made on first use)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None) -> None:
        if not bucket:
            raise ValueError("artifact_url: an s3:// URL needs a bucket (s3://bucket/prefix)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._options = {"endpoint_url": endpoint_url, "region_name": region, "aws_access_key_id": access_key_id,
                         "aws_secret_access_key": secret_access_key}
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:  # boto3's clients are thread-safe once made; making one is not
            if self._client is None:
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError:  # pragma: no cover - the s3 extra is missing
                    raise ArtifactStoreUnavailable(
                        "artifact_url is s3:// but boto3 is not installed (pip install 'regsearch[s3]')") from None
                config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)
                options = {k: v for k, v in self._options.items() if v is not None}
                self._client = boto3.session.Session().client("s3", config=config, **options)
            return self._client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call(self._s3())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactNotFound(key) from None
            raise ArtifactStoreUnavailable(f"cannot {what} {key} in {self.url}: {exc}") from exc
        except BotoCoreError as exc:
            raise ArtifactStoreUnavailable(f"cannot {what} {key} in {self.url}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        self._call("write", key, lambda s3: s3.put_object(Bucket=self.bucket, Key=name, Body=data,
                                                          ContentType="application/octet-stream"))

    def get(self, key: str) -> bytes:
        name = self._key(key)
        return self._call("read", key, lambda s3: s3.get_object(Bucket=self.bucket, Key=name)["Body"].read())

    def delete(self, key: str) -> None:
        name = self._key(key)
        self._call("delete", key, lambda s3: s3.delete_object(Bucket=self.bucket, Key=name))

    def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            self._call("look up", key, lambda s3: s3.head_object(Bucket=self.bucket, Key=name))
        except ArtifactNotFound:
            return False
        return True


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """The store ``settings`` name (no connection is made until the first call)."""
    url = settings.artifacts_url
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        secret = settings.s3_secret_access_key
        return S3ArtifactStore(parsed.netloc, unquote(parsed.path), endpoint_url=settings.s3_endpoint_url,
                               region=settings.s3_region, access_key_id=settings.s3_access_key_id,
                               secret_access_key=secret.get_secret_value() if secret is not None else None)
    if parsed.scheme == "file":
        return LocalArtifactStore(unquote(parsed.path))
    if parsed.scheme == "":
        return LocalArtifactStore(url)
    raise ValueError(f"artifact_url: {url!r} is neither s3://bucket/prefix nor a file:// URL or a path")
