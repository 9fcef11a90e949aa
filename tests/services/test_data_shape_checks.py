"""What is known of a job's data before a worker loads it: offline ``validate`` finds a missing
file or one of another kind; ``POST /jobs`` refuses what the sample shape a worker published for
an earlier job on the same data rules out (a VGG whose pools do not fit, a crop padding of half the
image side or more), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from regsearch.config import Settings
from regsearch.domain.data import DatasetError
from regsearch.domain.data_checks import check_data_format, shape_problem
from regsearch.domain.spec import validate_spec
from regsearch.services.api.main import create_app
from regsearch.store.db import Database
from regsearch.store.job_data import record_data
from tests.services.stack import small_spec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]
DIGITS_DATA = {"n_train": 1078, "n_val": 359, "n_test": 360, "sample_shape": [1, 8, 8], "n_classes": 10}


def digits(model: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    spec = small_spec("shape", **changes)
    if model is not None:  # replaced, not merged into the small spec's mlp
        spec["model"] = model
    return spec


@pytest.fixture
def client(sqlite_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings, db=db, broker_ping=lambda: None)) as test_client:
        yield test_client


def _publish(client: TestClient, db: Database, spec: dict[str, Any], data: dict[str, Any]) -> str:
    """A job whose worker loaded ``data`` (as ``regsearch.store.job_data.record_data`` records it)."""
    response = client.post("/jobs", json=spec)
    assert response.status_code == 201, response.text
    record_data(db, job_id=response.json()["id"], data=data)
    return str(response.json()["id"])


def _refusal(client: TestClient, spec: dict[str, Any]) -> dict[str, str]:
    response = client.post("/jobs", json=spec)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error


def test_the_published_shape_refuses_a_vgg_too_deep_and_a_crop_padding_too_wide(
    client: TestClient, db: Database
) -> None:
    too_deep = digits(model={"family": "vgg", "channels": [8, 8, 8, 8], "convs_per_stage": 1, "head": []})
    too_wide = digits(model={"family": "cnn", "channels": [4]}, training={"augment": {"crop_padding": 4}})
    # Nothing published yet: nothing rules them out (the first job's worker will tell).
    assert client.post("/jobs", json=too_deep).status_code == 201
    first = _publish(client, db, digits(), DIGITS_DATA)
    error = _refusal(client, too_deep)
    assert error["field"] == "model.channels"
    assert "4 stages pool by 16" in error["message"] and "[1, 8, 8]" in error["message"] and first in error["message"]
    error = _refusal(client, too_wide)
    assert error["field"] == "training.augment.crop_padding"
    assert "half the side of these 8x8 images" in error["message"] and "at most 3" in error["message"]
    # What fits is accepted; a split of its own does not change the examples' shape.
    fits = digits(model={"family": "vgg", "channels": [8, 8, 8], "convs_per_stage": 1, "head": []},
                  training={"augment": {"crop_padding": 1}}, dataset={"val_fraction": 0.3, "split_seed": 4})
    assert client.post("/jobs", json=fits).status_code == 201
    # Other data: the digits' shape says nothing about it.
    assert client.post("/jobs", json={**too_deep, "dataset": {"name": "mnist1d"}}).status_code == 201


def test_a_file_replaced_since_is_not_judged_by_the_old_shape(
    client: TestClient, db: Database, sqlite_settings: Settings
) -> None:
    path = sqlite_settings.data_dir / "small.npz"
    np.savez(path, x=np.zeros((30, 1, 8, 8), np.float32), y=np.arange(30) % 3)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    data = {"name": "npz", "path": "small.npz"}
    _publish(client, db, digits(dataset=data), {**DIGITS_DATA, "sample_shape": [1, 8, 8]})
    too_deep = digits(dataset=data, model={"family": "vgg", "channels": [8, 8, 8, 8], "convs_per_stage": 1, "head": []})
    assert _refusal(client, too_deep)["field"] == "model.channels"
    np.savez(path, x=np.zeros((30, 1, 32, 32), np.float32), y=np.arange(30) % 3)  # now large enough
    assert client.post("/jobs", json=too_deep).status_code == 201


def test_the_embedded_api_refuses_a_file_of_another_kind(client: TestClient, sqlite_settings: Settings) -> None:
    np.savez(sqlite_settings.data_dir / "data.npz", x=np.zeros((30, 4)), y=np.arange(30) % 3)
    (sqlite_settings.data_dir / "table.csv").write_text("a,b,label\n1,2,0\n")
    error = _refusal(client, digits(dataset={"name": "csv", "path": "data.npz"}))
    assert error == {"field": "dataset.path",
                     "message": "data.npz is a zip archive (an .npz?), not a csv file; use dataset name npz for it"}
    error = _refusal(client, digits(dataset={"name": "npz", "path": "table.csv"}))
    assert error["field"] == "dataset.path" and "table.csv is not an .npz file" in error["message"]


def test_shape_problem_names_the_field() -> None:
    cnn = validate_spec(digits(model={"family": "cnn", "channels": [4]}))
    problem = shape_problem(cnn, [40])
    assert problem is not None and problem.field == "model" and "family 'cnn' cannot take examples shaped [40]" in problem.message
    assert shape_problem(validate_spec(digits()), [40]) is None  # an mlp flattens anything
    assert shape_problem(validate_spec(digits(training={"augment": {"crop_padding": 15}})), [3, 32, 32]) is None
    assert shape_problem(validate_spec(digits(training={"augment": {"crop_padding": 16}})), [3, 32, 32]) is not None


def test_check_data_format(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)))
    (tmp_path / "b.csv").write_text("x,label\n1,0\n")
    (tmp_path / "c.csv").write_bytes(b"\x00\x01binary")
    check_data_format(tmp_path / "a.npz", "npz", "a.npz")
    check_data_format(tmp_path / "b.csv", "csv", "b.csv")
    for name, kind in (("a.npz", "csv"), ("b.csv", "npz"), ("c.csv", "csv")):
        with pytest.raises(DatasetError, match=f"^dataset.path: {name} "):
            check_data_format(tmp_path / name, kind, name)


def _validate(spec: dict[str, Any], tmp_path: Path, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return subprocess.run([sys.executable, "-m", "regsearch", "validate", str(path)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80", "REGSEARCH_DATA_DIR": str(data_dir), **env},
                          cwd=ROOT, timeout=60, check=False)


def test_offline_validate_looks_for_the_file_and_its_kind(tmp_path: Path, data_dir: Path) -> None:
    np.savez(data_dir / "data.npz", x=np.zeros((30, 4)), y=np.arange(30) % 3)
    missing = _validate(digits(dataset={"name": "npz", "path": "nowhere.npz"}), tmp_path, data_dir)
    assert missing.returncode == 2 and "dataset.path: nowhere.npz does not exist" in " ".join(missing.stderr.split())
    assert str(data_dir) in "".join(missing.stderr.split()), "the message says which data directory"
    wrong_kind = _validate(digits(dataset={"name": "csv", "path": "data.npz"}), tmp_path, data_dir)
    assert wrong_kind.returncode == 2 and "is a zip archive" in wrong_kind.stderr
    assert "Traceback" not in missing.stderr + wrong_kind.stderr
    valid = _validate(digits(dataset={"name": "npz", "path": "data.npz"}), tmp_path, data_dir)
    assert valid.returncode == 0 and "valid" in valid.stdout
    # With a broker, the workers read their own data directories: a note, not a refusal.
    remote = _validate(digits(dataset={"name": "npz", "path": "nowhere.npz"}), tmp_path, data_dir,
                       REGSEARCH_BROKER_URL="redis://127.0.0.1:6379/0")
    assert remote.returncode == 0 and "note: dataset.path: nowhere.npz does not exist" in " ".join(remote.stdout.split())
