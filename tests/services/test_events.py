"""Notices that wake the coordinator: real broker (the embedded filesystem transport), real API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from regsearch.config import Settings
from regsearch.messaging.events import EventListener, publish_trial_finished
from regsearch.messaging.queue import make_celery
from regsearch.services.api.main import create_app
from regsearch.store.db import Database
from tests.services.test_api import SPEC


def test_submitting_and_cancelling_wake_the_coordinator_and_a_replay_does_not(
    sqlite_settings: Settings, sqlite_db: Database
) -> None:
    listener = EventListener(make_celery(sqlite_settings))
    try:
        assert listener.wait(0.2) is False, "nothing yet"
        with TestClient(create_app(sqlite_settings, db=sqlite_db, broker_ping=lambda: None)) as client:
            job_id = client.post("/jobs", json=SPEC, headers={"Idempotency-Key": "k1"}).json()["id"]
            assert listener.wait(5) is True, "a new job wakes the coordinator"
            assert client.post("/jobs", json=SPEC, headers={"Idempotency-Key": "k1"}).status_code == 200
            assert listener.wait(0.5) is False, "a replayed submission created nothing to act on"
            assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
            assert listener.wait(5) is True, "a cancel wakes it too"
    finally:
        listener.close()


def test_a_worker_notice_reaches_the_listener(sqlite_settings: Settings) -> None:
    app = make_celery(sqlite_settings)
    listener = EventListener(app)
    try:
        listener.wait(0.1)  # declares the queue
        publish_trial_finished(app, "job-1")
        assert listener.wait(5) is True
    finally:
        listener.close()
