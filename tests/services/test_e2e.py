"""End to end with real processes: API, coordinator, Celery worker; embedded and production."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import pytest

from regsearch.config import Settings
from regsearch.messaging.queue import TrialQueue, make_celery
from regsearch.store import trials as trial_store
from tests.services.books import assert_books_agree
from tests.services.stack import Stack, running_stack, small_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_job_runs_end_to_end_and_confirms_its_leader_with_new_seeds(stack: Stack) -> None:
    job = stack.client.submit(small_spec(confirm={"top_k": 1, "seeds": 2}))
    done = stack.wait_job(job["id"])
    assert done["status"] == "completed", stack.logs()
    counts = done["counts"]
    assert counts["complete"] + counts["pruned"] + counts["failed"] == 6 + 2
    assert counts["complete"] >= 4 and counts["failed"] == 0, (counts, stack.logs())
    assert_books_agree(stack.db, stack.client, job["id"])

    best = stack.client.best(job["id"], 3)
    assert best and best[0]["recipe"]["slots"] and best[0]["metrics"]["test_acc"] is not None
    leader, confirmation = best[0], best[0]["confirmation"]
    assert confirmation["n"] == 3 and confirmation["seeds"] == [None, 1, 2], confirmation
    assert [item["confirmation"] for item in best[1:]] == [None] * (len(best) - 1)
    values = [item["metrics"]["val_acc"] for item in best[1:]]
    assert values == sorted(values, reverse=True)

    curves = {}
    for number in confirmation["numbers"]:
        detail = stack.client._request("GET", f"/jobs/{job['id']}/trials/{number}")
        assert detail["params"] == leader["params"] and [e["epoch"] for e in detail["epochs"]] == [1, 2, 3]
        curves[number] = [e["train_loss"] for e in detail["epochs"]]
    assert len({tuple(c) for c in curves.values()}) == 3, "each seed trains differently"


def test_a_duplicate_delivery_is_acknowledged_without_training(stack: Stack) -> None:
    job = stack.client.submit(small_spec(budget={"n_trials": 2}))
    stack.wait_job(job["id"])
    before = {r.number: (r.state, r.started_at, r.finished_at, r.metrics) for r in trial_store.job_trials(stack.db, job_id=job["id"])}
    queue = TrialQueue(make_celery(stack.settings))
    for row in trial_store.job_trials(stack.db, job_id=job["id"]):
        queue.send(row.id)
    stack.wait_for(lambda: stack.logs().count("duplicate delivery acknowledged") >= 2, 60, "the duplicates to be consumed")
    after = {r.number: (r.state, r.started_at, r.finished_at, r.metrics) for r in trial_store.job_trials(stack.db, job_id=job["id"])}
    assert after == before
    assert_books_agree(stack.db, stack.client, job["id"])


def test_cancellation_stops_running_trials_at_the_next_epoch(stack: Stack) -> None:
    spec = small_spec(training={"epochs": 400}, budget={"n_trials": 6, "parallelism": 2})
    job = stack.client.submit(spec)

    def two_running_with_epochs() -> bool:
        rows = stack.client.trials(job["id"], state="running")["items"]
        return len(rows) == 2 and all(
            stack.client._request("GET", f"/jobs/{job['id']}/trials/{r['number']}")["epochs"] for r in rows
        )

    stack.wait_for(two_running_with_epochs, 90, "two trials to be training")
    stack.client.cancel(job["id"])
    done = stack.wait_job(job["id"], timeout_s=90)
    assert done["status"] == "cancelled"
    rows = assert_books_agree(stack.db, stack.client, job["id"])
    stopped = [r for r in rows if r.started_at is not None]
    assert stopped and all(r.state == "cancelled" and r.error == "job cancelled" for r in stopped)
    assert done["counts"]["cancelled"] == len([r for r in rows if r.state == "cancelled"]) > 0
    assert done["counts"]["failed"] == 0, "a cancelled trial is not a failure"
    assert all(r.metrics is None or r.metrics["epochs_run"] < 400 for r in stopped)
    assert len(rows) <= 6


def test_the_coordinator_restarts_mid_job_from_the_database(embedded_settings: Settings, tmp_path: Path) -> None:
    with running_stack(embedded_settings, tmp_path / "logs") as stack:
        job = stack.client.submit(small_spec(budget={"n_trials": 8, "parallelism": 2}))
        stack.wait_for(lambda: stack.client.job(job["id"])["counts"]["complete"] + stack.client.job(job["id"])["counts"]["pruned"] >= 2,
                       90, "two trials to finish")
        stack.kill("coordinator", signal.SIGKILL)
        stack.start("coordinator")
        done = stack.wait_job(job["id"])
        assert done["status"] == "completed"
        rows = assert_books_agree(stack.db, stack.client, job["id"])
        assert len([r for r in rows if r.retry_of is None]) == 8


def test_more_workers_than_parallelism_never_run_more_than_parallelism(embedded_settings: Settings, tmp_path: Path) -> None:
    """Messages go out ahead of ``parallelism``; the claim holds the line when workers are idle."""
    with running_stack(embedded_settings, tmp_path / "logs", workers=3) as stack:
        job = stack.client.submit(small_spec("one-at-a-time", budget={"n_trials": 4, "parallelism": 1}, pruner="none"))
        done = stack.wait_job(job["id"], 120)
        assert done["status"] == "completed" and done["counts"]["complete"] == 4, stack.logs()
        rows = sorted(trial_store.job_trials(stack.db, job_id=job["id"]), key=lambda r: r.started_at)
        for earlier, later in itertools.pairwise(rows):
            assert earlier.finished_at <= later.started_at, "two trials of a parallelism-1 job overlapped"
        assert_books_agree(stack.db, stack.client, job["id"])
