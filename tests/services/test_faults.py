"""Faults survived with real processes: every trial ends in exactly one final state, and the API,
the trial table and Optuna's storage agree (issue: reliability)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from regsearch.config import Settings
from regsearch.messaging.queue import TrialQueue, make_celery
from regsearch.store import trials as trial_store
from regsearch.store.models import Trial
from tests.services.books import assert_books_agree
from tests.services.stack import Stack, running_stack, small_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
LONG = small_spec(training={"epochs": 300}, budget={"n_trials": 2, "parallelism": 1, "max_retries": 2})


def running_trial(stack: Stack, job_id: str, min_epochs: int = 2) -> Trial:
    """Wait for a running trial that has recorded ``min_epochs`` epochs."""

    def find() -> Trial | None:
        for row in trial_store.job_trials(stack.db, job_id=job_id):
            if row.state == "running":
                detail = stack.client._request("GET", f"/jobs/{job_id}/trials/{row.number}")
                if len(detail["epochs"]) >= min_epochs:
                    return row
        return None

    return stack.wait_for(find, 90, "a trial to be training")


def row(stack: Stack, job_id: str, number: int) -> Trial:
    return next(r for r in trial_store.job_trials(stack.db, job_id=job_id) if r.number == number)


def assert_retried(stack: Stack, job_id: str, lost: Trial, reason: str) -> None:
    old = row(stack, job_id, lost.number)
    assert old.state == "failed" and reason in (old.error or ""), old.error
    assert old.retried
    retry = [r for r in trial_store.job_trials(stack.db, job_id=job_id) if r.retry_of == lost.number]
    assert len(retry) == 1 and retry[0].attempt == 2 and retry[0].params == old.params
    assert retry[0].state in ("complete", "pruned")


@pytest.fixture
def stack(embedded_settings: Settings, tmp_path: Path) -> Any:
    with running_stack(embedded_settings, tmp_path / "logs", workers=2) as running:
        yield running


def test_a_killed_training_process_is_reaped_and_its_parameters_run_again(stack: Stack) -> None:
    job = stack.client.submit(LONG)
    victim = running_trial(stack, job["id"])
    os.kill(int((victim.worker or "").rsplit(":", 1)[1]), signal.SIGKILL)
    done = stack.wait_job(job["id"], 180)
    assert done["status"] == "completed", stack.logs()
    assert_retried(stack, job["id"], victim, "no heartbeat")
    assert_books_agree(stack.db, stack.client, job["id"])


def test_a_lost_worker_is_replaced_and_its_old_message_does_nothing(stack: Stack) -> None:
    job = stack.client.submit(LONG)
    victim = running_trial(stack, job["id"])
    stack.kill("worker", signal.SIGKILL)  # parent and pool children at once
    stack.start("worker")
    done = stack.wait_job(job["id"], 180)
    assert done["status"] == "completed", stack.logs()
    assert_retried(stack, job["id"], victim, "no heartbeat")
    before = row(stack, job["id"], victim.number)
    TrialQueue(make_celery(stack.settings)).send(victim.id)  # the old message, redelivered late
    stack.wait_for(lambda: "duplicate delivery acknowledged" in stack.logs(), 60, "the old message to be consumed")
    after = row(stack, job["id"], victim.number)
    assert (after.state, after.finished_at, after.error) == (before.state, before.finished_at, before.error)
    assert_books_agree(stack.db, stack.client, job["id"])


def test_a_worker_presumed_dead_comes_back_and_its_late_result_is_superseded(stack: Stack) -> None:
    job = stack.client.submit(LONG)
    victim = running_trial(stack, job["id"])
    os.killpg(stack.pid("worker"), signal.SIGSTOP)
    try:
        stack.wait_for(lambda: row(stack, job["id"], victim.number).state == "failed", 60, "the reaper")
    finally:
        os.killpg(stack.pid("worker"), signal.SIGCONT)
    done = stack.wait_job(job["id"], 180)
    assert done["status"] == "completed", stack.logs()
    late = row(stack, job["id"], victim.number)
    assert late.superseded_result is not None and late.superseded_result["lease"]
    assert_retried(stack, job["id"], victim, "no heartbeat")
    assert stack.supervisor.dead() == []
    assert_books_agree(stack.db, stack.client, job["id"])


def test_sigterm_drains_the_worker_and_the_trial_restarts_cleanly(stack: Stack) -> None:
    job = stack.client.submit(LONG)
    victim = running_trial(stack, job["id"])
    started = time.monotonic()
    stack.kill("worker", signal.SIGTERM, group=False, wait_s=30)  # a deploy: TERM to the leader only
    assert time.monotonic() - started < 20, "the worker should drain at the next epoch, not finish the trial"
    assert row(stack, job["id"], victim.number).state == "queued", stack.logs()
    assert "released back to the queue" in stack.logs()
    stack.start("worker")
    done = stack.wait_job(job["id"], 180)
    assert done["status"] == "completed", stack.logs()
    again = row(stack, job["id"], victim.number)
    assert again.state in ("complete", "pruned") and again.attempt == 1 and again.retry_of is None
    detail = stack.client._request("GET", f"/jobs/{job['id']}/trials/{victim.number}")
    assert [e["epoch"] for e in detail["epochs"]] == list(range(1, len(detail["epochs"]) + 1))
    assert_books_agree(stack.db, stack.client, job["id"])


def test_a_configuration_that_always_crashes_fails_after_bounded_retries(embedded_settings: Settings, tmp_path: Path) -> None:
    spec = small_spec(space={"placement": ["act-drop", "act"]}, budget={"n_trials": 6, "parallelism": 2, "max_retries": 1},
                      sampler="random")
    with running_stack(embedded_settings, tmp_path / "logs", start=False) as stack:
        stack.start("api", "coordinator")
        stack.start("worker", env={"REGSEARCH_FAILPOINTS": "worker.epoch:act-drop=oom"})
        job = stack.client.submit(spec)
        done = stack.wait_job(job["id"], 180)
        rows = assert_books_agree(stack.db, stack.client, job["id"])
    crashing = [r for r in rows if r.params["placement"] == "act-drop"]
    assert crashing, "the random sampler never picked act-drop"
    assert all(r.state == "failed" and "out of memory" in (r.error or "") for r in crashing)
    assert max(r.attempt for r in crashing) == 2, "one retry, then failed"
    assert done["status"] == "completed" and done["counts"]["complete"] + done["counts"]["pruned"] >= 1


@pytest.mark.parametrize("failpoint", ["coordinator.after_ask", "coordinator.after_commit"])
def test_a_coordinator_killed_mid_enqueue_leaves_no_orphan(embedded_settings: Settings, tmp_path: Path, failpoint: str) -> None:
    with running_stack(embedded_settings, tmp_path / "logs", start=False) as stack:
        stack.start("api", "worker")
        job = stack.client.submit(small_spec(budget={"n_trials": 4, "parallelism": 2}))
        stack.start("coordinator", env={"REGSEARCH_FAILPOINTS": f"{failpoint}=kill"})
        stack.wait_for(lambda: stack.supervisor.processes["coordinator"].poll() is not None, 60, "the coordinator to die")
        stack.supervisor.processes.pop("coordinator")
        stack.start("coordinator")
        done = stack.wait_job(job["id"], 120)
        assert done["status"] == "completed", stack.logs()
        rows = assert_books_agree(stack.db, stack.client, job["id"])
        assert len([r for r in rows if r.retry_of is None]) == 4
