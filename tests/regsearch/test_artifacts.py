"""The artifact store (a folder, and S3 against moto's real server) and the weights' retention:
a job's trials with kept weights never span more than ``budget.keep_weights`` configurations."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from regsearch.config import Settings
from regsearch.domain.ranking import objectives_of, rank_configurations
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState, WeightsState
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.artifacts import (
    ArtifactNotFound,
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    open_artifact_store,
    weights_key,
)
from regsearch.store.db import Database
from regsearch.store.models import Trial
from regsearch.store.weights import Retention, kept_configurations, sweep
from tests.conftest import S3Server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, sqlite_settings: Settings) -> ArtifactStore:
    """Each implementation, built from settings as every component builds it."""
    if request.param == "local":
        return open_artifact_store(sqlite_settings)
    server: S3Server = request.getfixturevalue("s3_server")
    return open_artifact_store(server.settings(sqlite_settings, request.getfixturevalue("s3_bucket")))


def test_put_get_exists_delete(store: ArtifactStore) -> None:
    key = weights_key("job1", 7)
    assert key == "job1/7.safetensors" and not store.exists(key)
    with pytest.raises(ArtifactNotFound):
        store.get(key)
    store.put(key, b"\x00first")
    store.put(key, b"\x00\x01second")  # overwritten whole
    assert store.exists(key) and store.get(key) == b"\x00\x01second"
    store.put(weights_key("job1", 8), b"other")
    store.delete(key)
    store.delete(key)  # deleting what is gone is not an error
    assert not store.exists(key) and store.get(weights_key("job1", 8)) == b"other"
    with pytest.raises(ArtifactNotFound):
        store.get(key)


@pytest.mark.parametrize("key", ["", "../x", "a/../b", "/abs", "a//b", ".hidden", "a\\b", "a/b\x00"])
def test_a_key_never_leaves_the_store(store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError, match="artifact key"):
        store.put(key, b"x")


def test_the_folder_is_in_the_data_directory_by_default(sqlite_settings: Settings) -> None:
    store = open_artifact_store(sqlite_settings)
    assert isinstance(store, LocalArtifactStore) and store.root == sqlite_settings.data_dir / "artifacts"
    store.put(weights_key("j", 0), b"w")
    assert (sqlite_settings.data_dir / "artifacts" / "j" / "0.safetensors").read_bytes() == b"w"
    assert [p.name for p in (sqlite_settings.data_dir / "artifacts" / "j").iterdir()] == ["0.safetensors"]


def test_the_setting_selects_the_store(sqlite_settings: Settings, tmp_path: Path) -> None:
    s3 = open_artifact_store(sqlite_settings.model_copy(update={"artifact_url": "s3://bucket/some/prefix/"}))
    assert isinstance(s3, S3ArtifactStore) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    local = open_artifact_store(sqlite_settings.model_copy(update={"artifact_url": (tmp_path / "w").as_uri()}))
    assert isinstance(local, LocalArtifactStore) and local.root == tmp_path / "w"
    with pytest.raises(ValueError, match="artifact_url"):
        open_artifact_store(sqlite_settings.model_copy(update={"artifact_url": "ftp://host/x"}))


def test_s3_objects_live_under_the_prefix(s3_server: S3Server, s3_bucket: str, sqlite_settings: Settings) -> None:
    store = open_artifact_store(s3_server.settings(sqlite_settings, s3_bucket, prefix="team/weights"))
    store.put(weights_key("abc", 3), b"tensor bytes")
    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["team/weights/abc/3.safetensors"]


# -- retention ------------------------------------------------------------------------------
def _job(db: Database, keep: int, **spec: Any) -> tuple[str, JobSpec]:
    job_spec = JobSpec(name="retention", dataset={"name": "digits"}, budget={"n_trials": 50, "parallelism": 50,
                                                                             "keep_weights": keep}, **spec)
    return job_store.create_job(db, spec=job_spec).job.id, job_spec


def _complete(db: Database, store: ArtifactStore, job_id: str, spec: JobSpec, number: int, val_acc: float,
              *, confirm_of: int | None = None, state: TrialState = TrialState.COMPLETE) -> None:
    """A trial through the worker's path: weights put, result written with retention, then swept."""
    trial_id = trial_store.add_trial(db, job_id=job_id, number=number, optuna_trial_id=number,
                                     params={"placement": "act", "n": confirm_of if confirm_of is not None else number},
                                     confirm_of=confirm_of, seed=1 if confirm_of is not None else None)
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    weights = None
    if state == TrialState.COMPLETE:
        store.put(weights_key(job_id, number), f"weights of {number}".encode())
        weights = WeightsState.KEPT
    assert trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=state,
                              metrics={"val_acc": val_acc, "test_acc": val_acc}, weights=weights,
                              retention=Retention(spec.budget.keep_weights, objectives_of(spec)))
    sweep(db, store, job_id=job_id)


def _rows(db: Database, job_id: str) -> list[Trial]:
    with db.read() as session:
        return list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)))


def _assert_books(db: Database, store: ArtifactStore, job_id: str, spec: JobSpec) -> set[int]:
    """Kept rows span at most keep configurations, those are the ranking's top ones, and the
    store holds exactly the kept rows' files."""
    rows = _rows(db, job_id)
    kept = kept_configurations(db, job_id=job_id)
    assert len(kept) <= spec.budget.keep_weights
    dicts = [job_store.trial_dict(r) for r in rows]
    top = [r.number for r in rank_configurations(dicts, objectives_of(spec), k=spec.budget.keep_weights)]
    assert kept == set(top)
    for row in rows:
        assert store.exists(weights_key(job_id, row.number)) == (row.weights == WeightsState.KEPT), row.number
        if row.state != TrialState.COMPLETE:
            assert row.weights is None
    return kept


def test_eviction_keeps_the_top_configurations(db: Database, store: ArtifactStore) -> None:
    job_id, spec = _job(db, keep=3)
    values = [0.50, 0.70, 0.60, 0.90, 0.40, 0.80, 0.65, 0.95, 0.10]
    for number, value in enumerate(values):
        _complete(db, store, job_id, spec, number, value)
        _assert_books(db, store, job_id, spec)
    _complete(db, store, job_id, spec, 9, 0.99, state=TrialState.PRUNED)  # pruned: no weights, no eviction
    assert _assert_books(db, store, job_id, spec) == {7, 3, 5}
    states = {r.number: r.weights for r in _rows(db, job_id)}
    assert states[1] == states[0] == WeightsState.EVICTED and states[9] is None


def test_a_configuration_keeps_its_confirmation_runs_weights_with_it(db: Database, store: ArtifactStore) -> None:
    job_id, spec = _job(db, keep=1)
    _complete(db, store, job_id, spec, 0, 0.80)
    _complete(db, store, job_id, spec, 1, 0.70)
    _complete(db, store, job_id, spec, 2, 0.75, confirm_of=0)  # a confirmed configuration ranks first
    assert _assert_books(db, store, job_id, spec) == {0}
    assert {r.number for r in _rows(db, job_id) if r.weights == WeightsState.KEPT} == {0, 2}
    _complete(db, store, job_id, spec, 3, 0.99)  # unconfirmed: behind the confirmed one
    assert _assert_books(db, store, job_id, spec) == {0}


def test_keep_zero_saves_nothing(db: Database, store: ArtifactStore) -> None:
    job_id, _ = _job(db, keep=0)
    trial_id = trial_store.add_trial(db, job_id=job_id, number=0, optuna_trial_id=0, params={"placement": "act"})
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=TrialState.COMPLETE, metrics={"val_acc": 0.5},
                       weights=WeightsState.NOT_SAVED, retention=Retention(0))
    assert [r.weights for r in _rows(db, job_id)] == [WeightsState.NOT_SAVED]


def test_concurrent_results_never_exceed_keep_weights(db: Database, store: ArtifactStore) -> None:
    """Eight threads finish 40 trials at once; at every moment, and at the end, the books hold."""
    job_id, spec = _job(db, keep=4)
    values = random.Random(7).sample(range(1000), 40)
    numbers = iter(range(40))
    lock, errors, peak = threading.Lock(), [], [0]
    done = threading.Event()

    def finish_some() -> None:
        try:
            while True:
                with lock:
                    number = next(numbers, None)
                if number is None:
                    return
                _complete(db, store, job_id, spec, number, values[number] / 1000)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], len(kept_configurations(db, job_id=job_id)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=finish_some) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert not errors, errors
    assert peak[0] <= 4
    kept = _assert_books(db, store, job_id, spec)
    assert kept == {n for n in range(40) if values[n] >= sorted(values)[-4]}
