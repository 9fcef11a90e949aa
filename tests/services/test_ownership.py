"""Coordinators' leases on jobs (regsearch.store.ownership) on PostgreSQL: jobs spread over the
live coordinators, an owner that stops renewing is replaced, and its writes after that are
refused by the fencing token (nothing asked twice, Optuna's record == the trial table)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from regsearch.config import Settings
from regsearch.services.coordinator import Coordinator
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.ownership import FencedOut, JobLeases, fenced
from tests.services.test_coordinator import Clock, RecordingQueue, make, study_of

LEASE_S = 1.0


@pytest.fixture
def db(pg_url: str):
    database = Database(pg_url)
    yield database
    database.dispose()


def test_jobs_spread_and_a_silent_owner_is_replaced(db: Database) -> None:
    a, b = JobLeases(db, LEASE_S, owner="a"), JobLeases(db, LEASE_S, owner="b")
    jobs = {"j1", "j2", "j3", "j4"}
    assert set(a.refresh(jobs, 0)) == jobs  # alone: it takes them all
    assert b.refresh(jobs, 0) == {}  # none expired yet
    a.refresh(jobs, 1)  # two live coordinators now: a hands back its surplus
    b.refresh(jobs, 1)
    assert len(a.held) == len(b.held) == 2 and set(a.held) | set(b.held) == jobs
    a_jobs = set(a.held)
    time.sleep(LEASE_S * 1.2)  # a stops renewing (dead or cut off)
    taken = b.refresh(jobs, 2)
    assert set(taken) == jobs
    assert all(taken[job] == 2 for job in a_jobs)  # one more owner: token + 1


def test_a_write_after_the_lease_moved_is_refused(db: Database) -> None:
    a, b = JobLeases(db, LEASE_S, owner="a"), JobLeases(db, LEASE_S, owner="b")
    token = a.refresh({"j1"}, 0)["j1"]
    write = sa.text("UPDATE regsearch_jobs SET name = name WHERE id = 'j1'")
    with fenced("j1", "a", token), db.session() as session:
        session.execute(write)  # still ours: passes
    time.sleep(LEASE_S * 1.2)
    assert b.refresh({"j1"}, 1) == {"j1": token + 1}
    with pytest.raises(FencedOut), fenced("j1", "a", token), db.session() as session:
        session.execute(write)


def _coordinator(db: Database, owner: str) -> Coordinator:
    settings = Settings(heartbeat_grace_s=30, resend_after_s=60, coordinator_lease_s=LEASE_S)
    return Coordinator(db, RecordingQueue(), settings, clock=Clock(), leases=JobLeases(db, LEASE_S, owner=owner))


def test_two_coordinators_never_ask_for_one_job(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [make(db, n_trials=6, parallelism=2)[3] for _ in range(2)]
    a, b = _coordinator(db, "a"), _coordinator(db, "b")
    a.tick()
    b.tick()
    time.sleep(LEASE_S / 3)
    a.tick()
    b.tick()
    assert len(a.leases.held) == len(b.leases.held) == 1  # one job each
    mine = next(iter(a.leases.held))
    asked_before = len(trial_store.job_trials(db, job_id=mine))
    # a is cut off just after its renewal: it keeps believing it holds its job ...
    monkeypatch.setattr(a.leases, "due", lambda *_: False)
    time.sleep(LEASE_S * 1.2)
    b.tick()
    assert set(b.leases.held) == set(jobs)  # ... while b adopts it within one lease period
    for row in trial_store.job_trials(db, job_id=mine):  # the running trials end: both want to ask
        if row.state == "queued":
            claim = trial_store.claim(db, trial_id=row.id, worker="w", device="cpu")
            trial_store.finish(db, trial_id=row.id, lease=claim.lease, state="complete", metrics={"val_acc": 0.5})
    a.tick()  # its first write for the job meets the new token: refused, the job dropped
    assert mine not in a.leases.held
    b.tick()
    rows = trial_store.job_trials(db, job_id=mine)
    assert len(rows) > asked_before  # b asked the next ones
    assert len(study_of(db, mine).trials) == len(rows)  # nothing asked by a: Optuna's record == the table
    assert len({row.number for row in rows}) == len(rows)
