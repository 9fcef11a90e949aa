"""Database faults with real processes: PostgreSQL refuses every connection for a few seconds
while trials record epochs, consult the pruner and tell Optuna; and non-finite training.

PostgreSQL is reached through :class:`tests.services.proxy.TcpProxy`, so the test can refuse new
connections and reset open ones without touching the shared server. Assertions go through a
direct connection, which the outage does not affect.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from regsearch.config import Settings
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from tests.services.books import assert_books_agree
from tests.services.proxy import TcpProxy
from tests.services.stack import (
    RedisServer,
    Stack,
    log_of,
    running_stack,
    small_spec,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

OUTAGE_S = 5.0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", persistent=False) as server:
        yield server


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 5432) as proxy:
        yield proxy


def through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def strict_json(response: httpx.Response) -> Any:
    """The body as JSON, refusing NaN/Infinity (which Python's json would accept)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{response.request.url.path} answered the non-JSON number {token}")

    return json.loads(response.text, parse_constant=refuse)


class OutageProbe(threading.Thread):
    """Polls the API while the database is down and records every status it answers."""

    def __init__(self, base_url: str, job_id: str | None, *, reads: bool = True, submits: bool = False) -> None:
        super().__init__(daemon=True)
        self.paths = ["/healthz", "/readyz"]
        if reads:
            self.paths += ["/jobs"]
        if reads and job_id:
            self.paths += [f"/jobs/{job_id}", f"/jobs/{job_id}/trials", f"/jobs/{job_id}/best", f"/jobs/{job_id}/trials/0"]
        self.submits = submits
        self.http = httpx.Client(base_url=base_url, timeout=15)
        self.stop = threading.Event()
        self.seen: dict[str, list[int]] = {p: [] for p in [*self.paths, *(["POST /jobs"] if submits else [])]}
        self.retry_after: set[str] = set()
        self.problems: list[str] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for path in self.paths:
                    self._record(path, lambda path=path: self.http.get(path))
                if self.submits:
                    self._record("POST /jobs", lambda: self.http.post("/jobs", json=small_spec("during-outage")))
                time.sleep(0.2)
        finally:
            self.http.close()

    def _record(self, key: str, call: Any) -> None:
        try:
            response = call()
        except httpx.HTTPError as exc:  # the API must answer, not hang up or time out
            self.problems.append(f"{key}: {exc!r}")
            return
        self.seen[key].append(response.status_code)
        if response.status_code == 503:
            self.retry_after.add(response.headers.get("retry-after", ""))
            if "detail" not in strict_json(response):
                self.problems.append(f"{key}: 503 without a detail: {response.text[:200]}")


def test_postgres_refusing_connections_for_a_few_seconds_is_ridden_out(
    data_dir: Path, pg_url: str, pg_proxy: TcpProxy, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(data_dir=data_dir, database_url=through(pg_proxy, pg_url), broker_url=redis_server.url)
    direct = Database(pg_url)
    # ~2.5 s per trial once warm (epochs are flushed every second, so when the first ones show,
    # more than half remain): the cut falls mid-training; two more trials are asked after it.
    spec = small_spec("outage", training={"epochs": 100}, budget={"n_trials": 4, "parallelism": 2, "max_retries": 2})
    try:
        with running_stack(settings, tmp_path / "logs", start=False) as stack:
            # The outage must be absorbed by retries, not by the reaper: a grace longer than it.
            stack.settings = stack.settings.model_copy(update={"heartbeat_grace_s": 30.0})
            stack.start()
            job = stack.client.submit(spec)
            wait_training(stack, direct, job["id"])

            probe = OutageProbe(stack.settings.api_url, job["id"])
            outage(pg_proxy, probe)

            done = stack.wait_job(job["id"], 120)
            assert done["status"] == "completed", stack.logs()
            assert stack.client.ready()
            rows = assert_books_agree(direct, stack.client, job["id"])
            logs = "\n".join(log_of(stack, name) for name in ("worker", "coordinator"))
            assert "retrying" in log_of(stack, "worker"), "the workers should have retried their writes"
            # Ridden out, not recovered from: no attempt lost, none stuck, none retried.
            assert all(r.state in ("complete", "pruned") and r.attempt == 1 for r in rows), \
                ([(r.number, r.state, r.error) for r in rows], logs[-3000:])
            for row in rows:
                detail = stack.client._request("GET", f"/jobs/{job['id']}/trials/{row.number}")
                epochs = [e["epoch"] for e in detail["epochs"]]
                assert epochs == list(range(1, len(epochs) + 1)) and epochs, (row.number, epochs)
                assert row.metrics and row.metrics["epochs_run"] == len(epochs)
    finally:
        direct.dispose()


def outage(proxy: TcpProxy, probe: OutageProbe, seconds: float = OUTAGE_S) -> None:
    """Refuse every database connection for ``seconds`` while ``probe`` polls the API; then check
    that the API told clients to come back later (503 + Retry-After) and never failed (500)."""
    proxy.cut("refuse")  # new connections refused, open ones reset
    probe.start()
    time.sleep(seconds)
    probe.stop.set()
    probe.join(30)
    proxy.restore()
    statuses = {key: sorted(set(codes)) for key, codes in probe.seen.items()}
    assert not probe.problems, probe.problems
    assert all(codes for codes in probe.seen.values()), statuses
    assert statuses["/healthz"] == [200], statuses
    for key, codes in statuses.items():
        assert 500 not in codes and all(c < 500 or c == 503 for c in codes), (key, statuses)
        if key != "/healthz":
            assert 503 in codes, (key, statuses)
    assert probe.retry_after == {"5"}, probe.retry_after


def test_submitting_a_job_while_postgres_refuses_connections_answers_503(
    data_dir: Path, pg_url: str, pg_proxy: TcpProxy, tmp_path: Path
) -> None:
    """Optuna's wrapped connection error (creating the job's study) must be a 503, not a 500,
    and the failed submission's clean-up must not mask it (fixed in 011045a)."""
    settings = Settings(data_dir=data_dir, database_url=through(pg_proxy, pg_url), broker_url=None)
    with running_stack(settings, tmp_path / "logs", start=False) as stack:
        stack.start("api")
        before = stack.client.jobs()["count"]
        outage(pg_proxy, OutageProbe(stack.settings.api_url, None, reads=False, submits=True), seconds=3)
        stack.wait_for(stack.client.ready, 30, "the API to be ready again")
        assert stack.client.jobs()["count"] == before, "a refused submission must leave no job behind"
        assert stack.client.submit(small_spec("after-outage"))["status"] == "queued"


def wait_training(stack: Stack, db: Database, job_id: str) -> None:
    """Two trials running, each with epochs recorded (so the cut falls mid-training)."""

    def training() -> bool:
        running = [r for r in trial_store.job_trials(db, job_id=job_id) if r.state == "running"]
        if len(running) < 2:
            return False
        return all(stack.client._request("GET", f"/jobs/{job_id}/trials/{r.number}")["epochs"] for r in running)

    stack.wait_for(training, 90, "two trials to be training")


# -- non-finite training --------------------------------------------------------------------
# Deterministic divergence: lr 10 with SGD (momentum 0.9) and ELU. Without batch norm the
# activations grow layer by layer until the loss is NaN in the first epoch ("act") or the second
# ("act-bn": the BN after the activation cannot stop the first layer's blow-up); with BN before
# the activation they stay bounded and the trial ends normally. The grid sampler runs each once.
NAN_SPEC = small_spec(
    "nan", model={"family": "mlp", "hidden": [32, 32], "activation": "elu"},
    space={"placement": ["act", "act-bn", "bn-act", "bn-act-drop"], "dropout": 0.2, "bn_momentum": 0.1},
    training={"epochs": 5, "batch_size": 64, "lr": 10.0, "optimizer": "sgd"},
    budget={"n_trials": 4, "parallelism": 2, "max_retries": 2}, sampler="grid", pruner="none",
)


def test_a_trial_whose_loss_becomes_nan_fails_with_the_reason_and_the_job_completes(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    with running_stack(embedded_settings, tmp_path / "logs") as stack:
        job = stack.client.submit(NAN_SPEC)
        done = stack.wait_job(job["id"], 120)
        rows = assert_books_agree(stack.db, stack.client, job["id"])
        assert done["status"] == "completed", (done, stack.logs())
        by_placement = {r.params["placement"]: r for r in rows}
        assert set(by_placement) == {"act", "act-bn", "bn-act", "bn-act-drop"} and len(rows) == 4, \
            [(r.number, r.params, r.state) for r in rows]
        for placement in ("act", "act-bn"):
            row = by_placement[placement]
            assert row.state == "failed", (placement, row.state, row.error)
            assert "NonFiniteLossError" in (row.error or "") and "nan" in (row.error or "").lower(), row.error
            assert "Traceback" not in (row.error or "")
            assert row.attempt == 1 and not row.retryable, "a deterministic failure is not retried"
        assert all(by_placement[p].state == "complete" for p in ("bn-act", "bn-act-drop")), \
            [(r.params["placement"], r.state, r.error) for r in rows]
        assert done["counts"] == {"queued": 0, "running": 0, "complete": 2, "pruned": 0, "failed": 2, "cancelled": 0}

        http = httpx.Client(base_url=stack.settings.api_url, timeout=10)
        try:
            for path in ("/jobs", f"/jobs/{job['id']}", f"/jobs/{job['id']}/trials", f"/jobs/{job['id']}/best?k=10",
                         *(f"/jobs/{job['id']}/trials/{r.number}" for r in rows)):
                response = http.get(path)
                assert response.status_code == 200, (path, response.status_code, response.text)
                assert_finite_or_null(strict_json(response), path)
            trials = {t["number"]: t for t in strict_json(http.get(f"/jobs/{job['id']}/trials"))["items"]}
            best = strict_json(http.get(f"/jobs/{job['id']}/best?k=10"))["items"]
        finally:
            http.close()
        for placement in ("act", "act-bn"):
            item = trials[by_placement[placement].number]
            assert item["state"] == "failed" and not (item["metrics"] or {}).get("val_acc"), item
        assert {b["number"] for b in best} == {by_placement[p].number for p in ("bn-act", "bn-act-drop")}
        assert all(isinstance(b["metrics"]["val_acc"], float) for b in best)
        detail = stack.client._request("GET", f"/jobs/{job['id']}/trials/{by_placement['act-bn'].number}")
        assert [e["epoch"] for e in detail["epochs"]] in ([], [1]), "epochs before the divergence are kept"


def assert_finite_or_null(value: Any, where: str) -> None:
    if isinstance(value, float):
        assert math.isfinite(value), where
    elif isinstance(value, dict):
        for item in value.values():
            assert_finite_or_null(item, where)
    elif isinstance(value, list):
        for item in value:
            assert_finite_or_null(item, where)
