"""Deleting a job (``DELETE /jobs/{id}``, ``Client.delete``, ``regsearch.store.deletion.delete_job``):
every row that names the job, its Optuna study and its kept weights go; other jobs stay; a queued
or running job is a 409 naming why; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from regsearch.config import Settings
from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import JobState, TrialState, WeightsState
from regsearch.services.api.main import create_app
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.artifacts import open_artifact_store, weights_key
from regsearch.store.db import Database
from regsearch.store.deletion import JobActive, JobNotFound, delete_job
from regsearch.store.studies import optuna_storage
from regsearch.store.weights import Retention

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def deletable_job(db: Database, settings: Settings, *, n_complete: int = 2) -> str:
    """A job whose trials left rows in every table a job has: trials, epochs, step values, weights."""
    spec = JobSpec(name="to-delete", dataset={"name": "digits"}, budget={"n_trials": 5, "keep_weights": 5})
    job = job_store.create_job(db, spec=spec).job
    study = optuna.load_study(study_name=job.study_name, storage=optuna_storage(db.url))
    store = open_artifact_store(settings)
    for number in range(n_complete + 1):
        optuna_trial = study.ask()
        trial_id = trial_store.add_trial(db, job_id=job.id, number=number, optuna_trial_id=optuna_trial._trial_id,
                                         params={"placement": "act", "n": number})
        claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
        assert isinstance(claim, trial_store.Claim)
        epochs = [EpochMetrics(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.4 + number / 10,
                               seconds=0.1)]
        if number == n_complete:  # the last one pruned: no weights
            trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=TrialState.PRUNED, epochs=epochs)
            continue
        store.put(weights_key(job.id, number), b"weights")
        trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=TrialState.COMPLETE, epochs=epochs,
                           metrics={"val_acc": 0.4 + number / 10}, step_values={1: 0.4 + number / 10},
                           weights=WeightsState.KEPT, retention=Retention(5))
    job_store.set_job_status(db, job_id=job.id, status=JobState.COMPLETED)
    return job.id


def job_rows(db: Database, job_id: str) -> dict[str, int]:
    """How many rows of each table belong to the job (Optuna's through its study)."""
    queries = {
        "jobs": "SELECT count(*) FROM regsearch_jobs WHERE id = :j",
        "trials": "SELECT count(*) FROM regsearch_trials WHERE job_id = :j",
        "epochs": "SELECT count(*) FROM regsearch_epochs e JOIN regsearch_trials t ON t.id = e.trial_id "
                  "WHERE t.job_id = :j",
        "step_values": "SELECT count(*) FROM regsearch_step_values WHERE job_id = :j",
        "studies": "SELECT count(*) FROM studies WHERE study_name = :s",
        "optuna_trials": "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                         "WHERE s.study_name = :s",
    }
    with db.engine.connect() as conn:
        return {name: conn.execute(text(sql), {"j": job_id, "s": f"regsearch-{job_id}"}).scalar_one()
                for name, sql in queries.items()}


@pytest.fixture
def client(sqlite_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings, db=db, broker_ping=lambda: None)) as test_client:
        yield test_client


def test_delete_removes_the_jobs_rows_study_and_weights_and_nothing_else(
    client: TestClient, sqlite_settings: Settings, db: Database
) -> None:
    doomed, kept = deletable_job(db, sqlite_settings), deletable_job(db, sqlite_settings)
    before = job_rows(db, doomed)
    assert before["trials"] == 3 and before["epochs"] == 3 and before["step_values"] == 2
    assert before["studies"] == 1 and before["optuna_trials"] == 3, "the study name is regsearch-<job id>"
    store = open_artifact_store(sqlite_settings)
    assert store.exists(weights_key(doomed, 0))

    response = client.delete(f"/jobs/{doomed}")
    assert response.status_code == 204 and response.content == b""
    assert set(job_rows(db, doomed).values()) == {0}
    assert not store.exists(weights_key(doomed, 0)) and not store.exists(weights_key(doomed, 1))
    assert not (sqlite_settings.data_dir / "artifacts" / doomed).exists()
    assert client.get(f"/jobs/{doomed}").status_code == 404
    assert client.delete(f"/jobs/{doomed}").status_code == 404
    # the other job is untouched
    assert job_rows(db, kept) == before
    assert store.exists(weights_key(kept, 1))
    assert [j["id"] for j in client.get("/jobs").json()["items"]] == [kept]


@pytest.mark.parametrize("status", [JobState.QUEUED, JobState.RUNNING])
def test_a_queued_or_running_job_is_409_saying_cancel_it_first(
    client: TestClient, sqlite_settings: Settings, db: Database, status: JobState
) -> None:
    job_id = deletable_job(db, sqlite_settings, n_complete=1)
    job_store.set_job_status(db, job_id=job_id, status=status)
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 409
    assert status in response.json()["detail"] and "cancel it first" in response.json()["detail"]
    assert job_rows(db, job_id)["trials"] == 2 and open_artifact_store(sqlite_settings).exists(weights_key(job_id, 0))
    with pytest.raises(JobActive):
        delete_job(db, open_artifact_store(sqlite_settings), job_id)


def test_unknown_jobs_are_404(client: TestClient, sqlite_settings: Settings, db: Database) -> None:
    assert client.delete("/jobs/nosuchjob").status_code == 404
    assert "nosuchjob" in client.delete("/jobs/nosuchjob").json()["detail"]
    with pytest.raises(JobNotFound):
        delete_job(db, open_artifact_store(sqlite_settings), "nosuchjob")


def test_cancelled_and_failed_jobs_can_be_deleted(client: TestClient, sqlite_settings: Settings, db: Database) -> None:
    for status in (JobState.CANCELLED, JobState.FAILED):
        job_id = deletable_job(db, sqlite_settings, n_complete=1)
        job_store.set_job_status(db, job_id=job_id, status=status)
        assert client.delete(f"/jobs/{job_id}").status_code == 204
        assert set(job_rows(db, job_id).values()) == {0}


def test_the_client_deletes_and_names_the_conflict(sqlite_settings: Settings, sqlite_db: Database) -> None:
    from regsearch.client import ApiError, Client

    job_id = deletable_job(sqlite_db, sqlite_settings, n_complete=1)
    running = deletable_job(sqlite_db, sqlite_settings, n_complete=1)
    job_store.set_job_status(sqlite_db, job_id=running, status=JobState.RUNNING)
    with TestClient(create_app(sqlite_settings, db=sqlite_db, broker_ping=lambda: None)) as test_client:
        client = Client("http://testserver")
        client._http = test_client  # the TestClient is an httpx.Client speaking to the app in-process
        assert client.delete(job_id) is None
        with pytest.raises(ApiError) as conflict:
            client.delete({"id": running})
        assert conflict.value.status == 409 and "cancel it first" in conflict.value.message
