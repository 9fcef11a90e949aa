"""Broker faults with real processes on the production backend (PostgreSQL + a private Redis):
a visibility timeout shorter than a trial, and Redis restarts with and without AOF.

Every scenario ends with "nothing lost": each trial in exactly one final state, and the API,
the trial table and Optuna's storage agree (``assert_books_agree``).

How kombu's Redis transport re-delivers (kombu 5.7): a delivered, unacknowledged message sits
in the ``unacked`` hash with its delivery time in the ``unacked_index`` sorted set.
``QoS.restore_visible`` pushes back onto the queue every entry older than
``visibility_timeout``, whoever holds it. A worker (event loop) calls it once when it registers
with its event loop (start-up, reconnection), then every ``unacked_restore_interval`` seconds
(default 10), but scans Redis only on every ``unacked_restore_throttle``-th call (default 10):
about every 100 s. A ``drain_events`` consumer (such as a coordinator listening for
trial-finished notices on the same Redis) calls it after every empty poll, scanning every 10th.
``regsearch/messaging/queue.py`` sets both so a running worker sweeps a few times per visibility timeout
(the second test pins that). The first test also starts a second worker, whose start-up sweep
re-delivers at once, so the scenario does not hang on sweep timing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regsearch.config import Settings
from regsearch.messaging.queue import DEFAULT_QUEUE
from regsearch.store import trials as trial_store
from regsearch.store.models import Trial
from tests.services.books import assert_books_agree
from tests.services.stack import (
    RedisServer,
    Stack,
    log_of,
    running_stack,
    small_spec,
    start_as,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def long_one(epochs: int) -> dict[str, Any]:
    """One trial of digits epochs (~30 ms each here; no pruner, so it never stops early)."""
    return small_spec("long", training={"epochs": epochs}, budget={"n_trials": 1, "parallelism": 1, "max_retries": 0},
                      space={"placement": "bn-act", "bn_momentum": 0.1}, pruner="none")


DUPLICATE = "duplicate delivery acknowledged"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", persistent=True) as server:
        yield server


def production(data_dir: Path, pg_url: str, broker_url: str, **extra: Any) -> Settings:
    return Settings(data_dir=data_dir, database_url=pg_url, broker_url=broker_url, api_token=None, **extra)


def only_trial(stack: Stack, job_id: str) -> Trial:
    rows = trial_store.job_trials(stack.db, job_id=job_id)
    assert len(rows) == 1, [(r.number, r.state) for r in rows]
    return rows[0]


def wait_running(stack: Stack, job_id: str) -> Trial:
    def running() -> Trial | None:
        rows = trial_store.job_trials(stack.db, job_id=job_id)
        return rows[0] if rows and rows[0].state == "running" else None

    return stack.wait_for(running, 60, "the trial to be claimed")


def worker_logs(stack: Stack) -> str:
    return "\n".join(log_of(stack, name) for name in ("worker", "worker2"))


def task_lines(logs: str, trial_id: int) -> tuple[list[str], list[str]]:
    """Celery task ids received, and the outcomes reported, for ``trial_id``."""
    received = re.findall(r"Task regsearch\.run_trial\[([0-9a-f-]+)\] received", logs)
    outcomes = re.findall(r"Task regsearch\.run_trial\[([0-9a-f-]+)\] succeeded in [0-9.]+s: "
                          rf"\{{'trial_id': {trial_id}, [^}}]*?'outcome': '(\w+)'\}}", logs)
    return received, outcomes


def assert_trained_once(stack: Stack, job_id: str, trial: Trial, n_epochs: int) -> None:
    row = only_trial(stack, job_id)
    assert row.state == "complete" and row.attempt == 1 and not row.retried, (row.state, row.error)
    assert (row.started_at, row.worker, row.lease) == (trial.started_at, trial.worker, trial.lease), "claimed twice"
    assert row.send_count == 1, "the coordinator re-sent it: the duplicate must come from the broker"
    detail = stack.client._request("GET", f"/jobs/{job_id}/trials/{row.number}")
    epochs = [e["epoch"] for e in detail["epochs"]]
    assert epochs == list(range(1, n_epochs + 1)), "every epoch exactly once"
    assert row.metrics and row.metrics["epochs_run"] == n_epochs


def test_a_trial_outliving_the_visibility_timeout_is_redelivered_and_acknowledged_without_training(
    data_dir: Path, pg_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    # The coordinator must not re-send it itself: a worker that is slow to claim under load
    # (more than resend_after_s) would otherwise make a second send the test did not ask for.
    settings = production(data_dir, pg_url, redis_server.url, visibility_timeout_s=2, resend_after_s=3600)
    with running_stack(settings, tmp_path / "logs", workers=2, start=False) as stack:
        stack.start("api", "coordinator", "worker")  # concurrency 2: a free slot for the duplicate
        # ~10-25 s: long enough that the re-delivered message meets the trial still running.
        job = stack.client.submit(long_one(400))
        trial = wait_running(stack, job["id"])
        time.sleep(3)  # the message is now older than the 2 s visibility timeout, still unacked
        # A worker that starts sweeps the unacked messages (kombu: restore_visible at start-up).
        # The re-delivered message goes to whichever worker has a free slot.
        start_as(stack, "worker2", concurrency=1)
        stack.wait_for(lambda: DUPLICATE in worker_logs(stack), 60, "the re-delivered message to be consumed")
        assert only_trial(stack, job["id"]).state == "running", "the duplicate should meet the trial live"

        done = stack.wait_job(job["id"], 120)
        assert done["status"] == "completed", stack.logs()
        assert_trained_once(stack, job["id"], trial, 400)
        received, outcomes = task_lines(worker_logs(stack), trial.id)
        task_id = outcomes[0][0]
        assert received.count(task_id) >= 2, ("the same message was delivered again", received)
        assert sorted(o for _, o in outcomes).count("complete") == 1, outcomes
        assert {t for t, _ in outcomes} == {task_id} and "duplicate" in {o for _, o in outcomes}, outcomes
        assert "Traceback" not in worker_logs(stack)
        assert_books_agree(stack.db, stack.client, job["id"])


def test_a_running_worker_sweeps_unacked_messages_about_as_often_as_the_visibility_timeout(
    data_dir: Path, redis_server: RedisServer
) -> None:
    """The root cause of the ~100 s, as the worker's own Celery app configures kombu."""
    from regsearch.messaging.queue import make_celery

    settings = Settings(data_dir=data_dir, broker_url=redis_server.url, visibility_timeout_s=2)
    with make_celery(settings).connection_for_read() as conn:
        channel = conn.default_channel
        # kombu.transport.redis: Transport.register_with_event_loop and QoS.restore_visible
        interval = conn.transport_options.get("unacked_restore_interval", type(channel).unacked_restore_interval)
        sweep_every_s = interval * channel.unacked_restore_throttle
        assert channel.visibility_timeout == 2
    assert sweep_every_s <= max(settings.visibility_timeout_s, 10), f"unacked messages are swept every {sweep_every_s} s"


# -- Redis restarts ------------------------------------------------------------------------
RESTART_SPEC = small_spec("restart", budget={"n_trials": 4, "parallelism": 3}, pruner="none")


def queued_and_sent(stack: Stack, job_id: str, n: int) -> list[Trial]:
    """Wait for ``n`` queued trials whose message went to the broker; returns those rows."""

    def sent() -> list[Trial] | None:
        rows = [r for r in trial_store.job_trials(stack.db, job_id=job_id) if r.state == "queued" and r.send_count >= 1]
        return rows if len(rows) >= n else None

    rows = stack.wait_for(sent, 60, f"{n} trials to be queued and sent")
    time.sleep(0.5)  # let the coordinator finish its tick
    return [r for r in trial_store.job_trials(stack.db, job_id=job_id) if r.state == "queued" and r.send_count >= 1] or rows


def test_queued_trials_survive_a_redis_restart_with_aof(data_dir: Path, pg_url: str, tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", persistent=True) as redis_server:
        settings = production(data_dir, pg_url, redis_server.url)
        with running_stack(settings, tmp_path / "logs", start=False) as stack:
            # No worker yet, so the messages wait in Redis; no re-send, so only Redis can deliver them.
            stack.start("api")
            stack.start("coordinator", env={"REGSEARCH_RESEND_AFTER_S": "600"})
            job = stack.client.submit(RESTART_SPEC)
            sent = queued_and_sent(stack, job["id"], 3)
            assert redis_server.client().llen(DEFAULT_QUEUE) == len(sent)

            redis_server.restart()  # SHUTDOWN (AOF flushed), then start on the same dir
            assert redis_server.client().llen(DEFAULT_QUEUE) == len(sent), "AOF should keep the queued messages"

            stack.start("worker")
            done = stack.wait_job(job["id"], 120)
            assert done["status"] == "completed", stack.logs()
            rows = assert_books_agree(stack.db, stack.client, job["id"])
            assert len(rows) == 4 and all(r.state in ("complete", "pruned") for r in rows), [(r.number, r.state) for r in rows]
            # Each trial ran from its one message: the three that waited through the restart, and
            # the fourth, which the coordinator sent after it over a new connection.
            assert [r.send_count for r in rows] == [1, 1, 1, 1]


def test_without_aof_lost_messages_are_resent_from_the_database(data_dir: Path, pg_url: str, tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", persistent=False) as redis_server:
        settings = production(data_dir, pg_url, redis_server.url)
        with running_stack(settings, tmp_path / "logs", start=False) as stack:  # resend_after_s=5
            stack.start("api", "coordinator")
            job = stack.client.submit(RESTART_SPEC)
            first = queued_and_sent(stack, job["id"], 3)
            assert redis_server.client().llen(DEFAULT_QUEUE) >= len(first)  # re-sends may add duplicates

            redis_server.restart()
            assert redis_server.client().llen(DEFAULT_QUEUE) == 0, "without AOF the restart loses the queue"

            stack.start("worker")
            done = stack.wait_job(job["id"], 120)
            assert done["status"] == "completed", stack.logs()
            rows = assert_books_agree(stack.db, stack.client, job["id"])
            assert len(rows) == 4 and all(r.state in ("complete", "pruned") for r in rows), [(r.number, r.state) for r in rows]
            resent = {r.number: r.send_count for r in rows if r.number in {t.number for t in first}}
            assert all(count >= 2 for count in resent.values()), ("the reconciler should have re-sent them", resent)
