"""``GET /jobs/{id}/trials/{number}/weights``: the kept file's bytes, else a 404 naming why."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from regsearch.config import Settings
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import TrialState, WeightsState
from regsearch.services.api.main import create_app
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.artifacts import open_artifact_store, weights_key
from regsearch.store.db import Database
from regsearch.store.weights import Retention, sweep

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _job(db: Database, keep: int = 1) -> str:
    spec = JobSpec(name="weights-api", dataset={"name": "digits"},
                   budget={"n_trials": 20, "parallelism": 20, "keep_weights": keep})
    return job_store.create_job(db, spec=spec).job.id


def _trial(db: Database, settings: Settings, job_id: str, number: int, state: TrialState | None,
           val_acc: float = 0.5, keep: int = 1, error: str | None = None) -> None:
    """A trial left ``state`` (None: queued, RUNNING: claimed) the way a worker leaves it."""
    trial_id = trial_store.add_trial(db, job_id=job_id, number=number, optuna_trial_id=number,
                                     params={"placement": "act", "n": number})
    if state is None:
        return
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert isinstance(claim, trial_store.Claim)
    if state == TrialState.RUNNING:
        return
    weights = None
    if state == TrialState.COMPLETE:
        weights = WeightsState.KEPT if keep else WeightsState.NOT_SAVED
        if keep:
            open_artifact_store(settings).put(weights_key(job_id, number), f"bytes of {number}".encode())
    trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=state, error=error,
                       metrics={"val_acc": val_acc}, weights=weights, retention=Retention(keep))
    sweep(db, open_artifact_store(settings), job_id=job_id)


@pytest.fixture
def client(sqlite_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings, db=db, broker_ping=lambda: None)) as test_client:
        yield test_client


def test_a_kept_trial_serves_its_file(client: TestClient, sqlite_settings: Settings, db: Database) -> None:
    job_id = _job(db)
    _trial(db, sqlite_settings, job_id, 0, TrialState.COMPLETE, 0.9)
    response = client.get(f"/jobs/{job_id}/trials/0/weights")
    assert response.status_code == 200 and response.content == b"bytes of 0"
    assert response.headers["content-type"] == "application/octet-stream"
    assert client.get(f"/jobs/{job_id}/trials/0").json()["weights"] == "kept"
    assert client.get(f"/jobs/{job_id}/best").json()["items"][0]["weights"] == "kept"


def test_every_trial_without_weights_says_why(client: TestClient, sqlite_settings: Settings, db: Database) -> None:
    job_id = _job(db, keep=1)
    _trial(db, sqlite_settings, job_id, 0, TrialState.COMPLETE, 0.5)
    _trial(db, sqlite_settings, job_id, 1, TrialState.COMPLETE, 0.9)  # evicts trial 0's
    _trial(db, sqlite_settings, job_id, 2, TrialState.PRUNED)
    _trial(db, sqlite_settings, job_id, 3, TrialState.FAILED, error="NonFiniteLossError: training loss became nan")
    _trial(db, sqlite_settings, job_id, 4, TrialState.RUNNING)
    _trial(db, sqlite_settings, job_id, 5, None)
    _trial(db, sqlite_settings, job_id, 6, TrialState.CANCELLED, error="job cancelled")
    expected = {
        0: "were evicted: job .* keeps those of its top 1 configurations \\(budget.keep_weights\\)",
        2: "trial 2 was pruned: only complete trials keep weights",
        3: "trial 3 failed \\(NonFiniteLossError: training loss became nan\\)",
        4: "trial 4 has not finished \\(running\\)",
        5: "trial 5 has not finished \\(queued\\)",
        6: "trial 6 was cancelled",
        99: "trial 99 of job .* not found",
    }
    for number, reason in expected.items():
        response = client.get(f"/jobs/{job_id}/trials/{number}/weights")
        assert response.status_code == 404, (number, response.text)
        assert response.headers["content-type"] == "application/json"
        assert re.search(reason, response.json()["detail"]), (number, response.json()["detail"])
    assert client.get(f"/jobs/{job_id}/trials/1/weights").content == b"bytes of 1"
    assert client.get("/jobs/nosuchjob/trials/0/weights").status_code == 404
    assert client.get(f"/jobs/{job_id}/trials/-1/weights").status_code == 422


def test_keep_zero_says_so(client: TestClient, sqlite_settings: Settings, db: Database) -> None:
    job_id = _job(db, keep=0)
    _trial(db, sqlite_settings, job_id, 0, TrialState.COMPLETE, keep=0)
    detail = client.get(f"/jobs/{job_id}/trials/0/weights").json()["detail"]
    assert "not saved" in detail and "budget.keep_weights 0" in detail


def test_a_file_gone_from_the_store_is_a_404(client: TestClient, sqlite_settings: Settings, db: Database) -> None:
    job_id = _job(db)
    _trial(db, sqlite_settings, job_id, 0, TrialState.COMPLETE)
    open_artifact_store(sqlite_settings).delete(weights_key(job_id, 0))  # evicted between row and file
    response = client.get(f"/jobs/{job_id}/trials/0/weights")
    assert response.status_code == 404 and "evicted" in response.json()["detail"]


def test_an_unreadable_store_is_a_503(sqlite_settings: Settings, sqlite_db: Database, tmp_path: Path) -> None:
    job_id = _job(sqlite_db)
    _trial(sqlite_db, sqlite_settings, job_id, 0, TrialState.COMPLETE)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    broken = sqlite_settings.model_copy(update={"artifact_url": not_a_folder.as_uri()})
    with TestClient(create_app(broken, db=sqlite_db, broker_ping=lambda: None)) as client:
        response = client.get(f"/jobs/{job_id}/trials/0/weights")
    assert response.status_code == 503 and "artifact store" in response.json()["detail"]
    assert response.headers["retry-after"]


def test_the_route_is_documented(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/trials/{number}/weights"]["get"]
    assert "application/octet-stream" in operation["responses"]["200"]["content"]
    assert "404" in operation["responses"]
