"""Load with real processes: many API clients on PostgreSQL (bench/load_api.py, shortened), and
SQLite dev mode with 16 writer processes plus an API reader on the same file."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from regsearch.config import Settings
from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import validate_spec
from regsearch.store import jobs as job_store
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade
from tests.services.stack import running_stack, small_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]


def test_fifty_clients_on_postgresql_get_no_error(pg_url: str, tmp_path: Path) -> None:
    """bench/load_api.py, 50 clients x 10 s against a real ``regsearch api`` on PostgreSQL.

    ``pg_url`` only proves PostgreSQL is reachable (skip or CI failure); the bench creates and
    drops its own database.
    """
    summary = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load_api.py"), "--backend", "postgresql", "--clients", "50",
         "--seconds", "10", "--seed-jobs", "3", "--seed-trials", "10", "--seed-epochs", "10", "--json", str(summary)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=100, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"load: backend=postgresql clients=50 seconds=10 requests=(\d+) errors=(\d+) p95_ms=([\d.]+)", last)
    assert match, last
    requests, errors = int(match[1]), int(match[2])
    assert errors == 0, result.stdout[-3000:]
    assert requests >= 100, result.stdout[-3000:]


# -- SQLite dev mode: 16 writer processes and a reader ---------------------------------------
WRITERS = 16
WRITE_SECONDS = 10.0


def _writer(url: str, job_id: str, index: int, start_at: float, seconds: float, out: Any) -> None:
    """One worker-like process: add, claim, record epochs, beat, finish, as fast as it can."""
    from regsearch.store import trials as trial_store

    db = Database(url)
    done, errors = 0, []
    number = index * 1_000_000
    while time.time() < start_at:
        time.sleep(0.005)
    deadline = start_at + seconds
    while time.time() < deadline:
        number += 1
        try:
            trial_id = trial_store.add_trial(db, job_id=job_id, number=number, optuna_trial_id=number,
                                             params={"placement": "act"})
            claim = trial_store.claim(db, trial_id=trial_id, worker=f"w{index}:{os.getpid()}", device="cpu")
            assert isinstance(claim, trial_store.Claim), f"a fresh trial could not be claimed: {claim}"
            for epoch in (1, 2, 3):
                metrics = EpochMetrics(epoch=epoch, train_loss=1 / epoch, train_acc=0.5, val_loss=1 / epoch,
                                       val_acc=0.4 + epoch / 10, seconds=0.01)
                trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[metrics])
            trial_store.beat(db, trial_id=trial_id, lease=claim.lease)
            assert trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state="complete",
                                      metrics={"val_acc": 0.7, "test_acc": 0.69, "gap": 0.01, "epochs_run": 3})
            done += 1
        except Exception as exc:  # noqa: BLE001 - every error is counted and reported
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    db.dispose()
    out.put((index, done, errors))


def test_sqlite_dev_mode_takes_16_writer_processes_and_a_reader_without_database_is_locked(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    settings = embedded_settings
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    # parallelism above the writer count: the claim enforces it, and here every writer claims
    job = job_store.create_job(db, spec=validate_spec(small_spec("sqlite-load", budget={"parallelism": 64}))).job
    db.dispose()

    with running_stack(settings, tmp_path / "logs", start=False) as stack:
        stack.start("api")  # the reader: a real API process on the same SQLite file
        context = multiprocessing.get_context("fork")  # fork: 16 processes start in milliseconds
        out = context.Queue()
        start_at = time.time() + 2.0
        writers = [context.Process(target=_writer, args=(settings.sqlalchemy_url, job.id, i, start_at, WRITE_SECONDS, out))
                   for i in range(WRITERS)]
        for process in writers:
            process.start()

        reads: Counter[str] = Counter()
        read_errors: list[str] = []

        def read() -> None:
            paths = ["/jobs", f"/jobs/{job.id}", f"/jobs/{job.id}/trials?limit=50", f"/jobs/{job.id}/best",
                     f"/jobs/{job.id}/trials?state=running&limit=20", "/readyz"]
            with httpx.Client(base_url=stack.settings.api_url, timeout=30) as http:
                while time.time() < start_at:
                    time.sleep(0.01)
                while time.time() < start_at + WRITE_SECONDS:
                    for path in paths:
                        try:
                            response = http.get(path)
                        except httpx.HTTPError as exc:
                            read_errors.append(f"{path}: {exc!r}")
                            continue
                        reads[str(response.status_code)] += 1
                        if response.status_code != 200:
                            read_errors.append(f"{path}: {response.status_code} {response.text[:200]}")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        results = [out.get(timeout=WRITE_SECONDS + 60) for _ in writers]
        for process in writers:
            process.join(10)
        reader.join(30)

        errors = [e for _, _, errs in results for e in errs]
        finished = sum(done for _, done, _ in results)
        locked = [e for e in [*errors, *read_errors] if "locked" in e.lower() or "busy" in e.lower()]
        assert not locked, locked[:10]
        assert not errors, errors[:10]
        assert not read_errors, read_errors[:10]
        assert all(process.exitcode == 0 for process in writers), [p.exitcode for p in writers]
        assert finished >= WRITERS, f"only {finished} trials in {WRITE_SECONDS} s"
        assert sum(reads.values()) >= 20, reads
        # Nothing lost: every trial a writer finished is complete, with its three epochs.
        counts = stack.client.job(job.id)["counts"]
        assert counts["complete"] == finished and counts["running"] == counts["queued"] == 0, (counts, finished)
        page = stack.client.trials(job.id, limit=5)["items"]
        for item in page:
            detail = stack.client._request("GET", f"/jobs/{job.id}/trials/{item['number']}")
            assert [e["epoch"] for e in detail["epochs"]] == [1, 2, 3]
        print(f"sqlite: {WRITERS} writers finished {finished} trials ({finished * 6} write transactions) "
              f"in {WRITE_SECONDS:g} s with {sum(reads.values())} API reads; 0 errors")
