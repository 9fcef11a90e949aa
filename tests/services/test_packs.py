"""Packed trials through the real service (API, coordinator, a Celery worker): a job with
``budget.pack`` trains same-structure trials as one packed model, every member ends in one final
state with the books agreeing, and a killed process fails every member for retry."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from regsearch.config import Settings
from regsearch.store import trials as trial_store
from regsearch.store.models import Trial
from tests.services.books import assert_books_agree
from tests.services.stack import Stack, log_of, running_stack, small_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def pack_spec(epochs: int, n_trials: int, pack: int, **budget: int) -> dict:
    return small_spec("packed", space={"placement": ["bn-act-drop"], "dropout": {"low": 0.1, "high": 0.5}},
                      training={"epochs": epochs}, sampler="random", pruner="none",
                      budget={"n_trials": n_trials, "parallelism": pack, "pack": pack, **budget})


def packed_members(stack: Stack, job_id: str, n: int) -> list[Trial]:
    """Wait until ``n`` trials of the job run in one process, a pack; those trials."""

    def find() -> list[Trial] | None:
        running = [r for r in trial_store.job_trials(stack.db, job_id=job_id) if r.state == "running"]
        workers = {r.worker for r in running}
        return running if len(running) == n and len(workers) == 1 else None

    return stack.wait_for(find, 90, f"{n} trials to train in one pack")


def test_a_packed_job_completes_with_every_member_on_its_own_row(embedded_settings: Settings, tmp_path: Path) -> None:
    with running_stack(embedded_settings, tmp_path / "logs", workers=2) as stack:
        job = stack.client.submit(pack_spec(epochs=4, n_trials=6, pack=3))
        done = stack.wait_job(job["id"], 180)
        assert done["status"] == "completed", stack.logs()
        rows = assert_books_agree(stack.db, stack.client, job["id"])
        assert [r.state for r in rows] == ["complete"] * 6
        assert "train as one pack" in log_of(stack, "worker"), "no pack formed"
        for number in range(6):
            detail = stack.client._request("GET", f"/jobs/{job['id']}/trials/{number}")
            assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3, 4]


def test_a_killed_pack_fails_every_member_for_retry(embedded_settings: Settings, tmp_path: Path) -> None:
    # One trial process: it takes the first message and the other two trials as its companions.
    with running_stack(embedded_settings, tmp_path / "logs", workers=1) as stack:
        job = stack.client.submit(pack_spec(epochs=300, n_trials=3, pack=3, max_retries=1))
        members = packed_members(stack, job["id"], 3)
        os.kill(int((members[0].worker or "").rsplit(":", 1)[1]), signal.SIGKILL)
        done = stack.wait_job(job["id"], 240)
        assert done["status"] == "completed", stack.logs()
        rows = assert_books_agree(stack.db, stack.client, job["id"])
        by_number = {r.number: r for r in rows}
        for member in members:
            old = by_number[member.number]
            assert old.state == "failed" and "no heartbeat" in (old.error or "") and old.retried, old.error
            retry = [r for r in rows if r.retry_of == member.number]
            assert len(retry) == 1 and retry[0].state == "complete" and retry[0].params == old.params


def test_confirmation_runs_of_a_pruned_job_train_as_one_pack(embedded_settings: Settings, tmp_path: Path) -> None:
    """On a CPU a pruned job's search trials train alone (regsearch.domain.packing); its
    confirmation runs, never pruned, are one configuration with several seeds and go as one pack."""
    spec = small_spec("confirm-pack", space={"placement": ["bn-act-drop"], "dropout": {"low": 0.1, "high": 0.5}},
                      training={"epochs": 3}, sampler="random", pruner="median", confirm={"top_k": 1, "seeds": 3},
                      budget={"n_trials": 3, "parallelism": 3, "pack": 3})
    with running_stack(embedded_settings, tmp_path / "logs", workers=1) as stack:
        job = stack.client.submit(spec)
        done = stack.wait_job(job["id"], 180)
        assert done["status"] == "completed", stack.logs()
        rows = assert_books_agree(stack.db, stack.client, job["id"])
        search = [r for r in rows if r.confirm_of is None]
        confirm = [r for r in rows if r.confirm_of is not None]
        assert len(search) == 3 and len(confirm) == 3 and all(r.state == "complete" for r in rows)
        assert not any(together(a, b) for a, b in pairs(search)), "search trials each trained alone"
        assert all(together(a, b) for a, b in pairs(confirm)), \
            "the confirmation runs trained together in one process, as one pack"
        assert "packing declined" in log_of(stack, "worker")
        assert "train as one pack" in log_of(stack, "worker")



def pairs(rows: list[Trial]) -> list[tuple[Trial, Trial]]:
    return [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]


def together(a: Trial, b: Trial) -> bool:
    """Whether two trials ran at the same time in one process (a process trains one thing at a
    time, so only a pack's members overlap there)."""
    assert a.started_at and a.finished_at and b.started_at and b.finished_at
    return a.worker == b.worker and a.started_at < b.finished_at and b.started_at < a.finished_at
