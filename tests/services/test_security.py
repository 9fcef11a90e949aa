"""Security with real processes: no pickle on the queue, the bearer token on every route but
health, no public bind without a token, and dataset paths confined to the data directory."""

from __future__ import annotations

import os
import pickle
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from regsearch.config import Settings
from regsearch.domain.space import suggest_params
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import EndReason
from regsearch.messaging.queue import DEFAULT_QUEUE, RUN_TRIAL_TASK, TrialQueue, make_celery
from regsearch.store import studies
from regsearch.store import trials as trial_store
from tests.services.books import assert_books_agree
from tests.services.stack import (
    RedisServer,
    Stack,
    free_port,
    log_of,
    running_stack,
    small_spec,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


# -- no pickle on the queue -----------------------------------------------------------------
class OpensAFile:
    """Unpickling this creates ``path``: the proof that a payload was deserialized at all."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@pytest.fixture(params=["embedded", "production"])
def queue_settings(request: pytest.FixtureRequest, data_dir: Path, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "embedded":
        yield Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)
        return
    pg_url = request.getfixturevalue("pg_url")
    with RedisServer(tmp_path / "redis", persistent=False) as server:
        yield Settings(data_dir=data_dir, database_url=pg_url, broker_url=server.url, api_token=None)


def queued_trial(stack: Stack, job_id: str) -> int:
    """A trial row as the coordinator writes it (asked in Optuna, committed, not yet sent)."""
    job = stack.client.job(job_id)
    spec = JobSpec.model_validate(job["spec"])
    study = studies.load_study(stack.db.url, studies.study_name_for(job_id), spec)
    trial = study.ask()
    params = suggest_params(trial, spec)
    return trial_store.add_trial(stack.db, job_id=job_id, number=trial.number, optuna_trial_id=trial._trial_id,
                                 params=params)


def test_a_pickle_message_on_the_queue_is_rejected_never_executed(queue_settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    with running_stack(queue_settings, tmp_path / "logs", workers=1, start=False) as stack:
        stack.start("api", "worker")  # no coordinator: only our messages reach the worker
        job = stack.client.submit(small_spec("pickle", budget={"n_trials": 1, "parallelism": 1}, pruner="none"))
        trial_id = queued_trial(stack, job["id"])

        # A sender that allows pickle: what an attacker with access to the broker would publish.
        sender = make_celery(stack.settings)
        sender.conf.accept_content = ["json", "pickle"]
        sender.send_task(RUN_TRIAL_TASK, args=[trial_id], queue=DEFAULT_QUEUE, serializer="pickle")
        sender.send_task(RUN_TRIAL_TASK, args=[trial_id], kwargs={"payload": OpensAFile(str(marker))},
                         queue=DEFAULT_QUEUE, serializer="pickle")
        assert pickle.loads(pickle.dumps(OpensAFile(str(tmp_path / "self-check")))) and (tmp_path / "self-check").exists()

        refused = re.compile(r"Received invalid task message: Refusing to deserialize untrusted content of type "
                             r"pickle \(application/x-python-serialize\)")
        stack.wait_for(lambda: len(refused.findall(log_of(stack, "worker"))) == 2, 60, "the worker to refuse both")
        time.sleep(1)  # anything the worker would do with them, it would have started by now
        row = trial_store.job_trials(stack.db, job_id=job["id"])[0]
        assert (row.state, row.started_at, row.worker, row.lease) == ("queued", None, None, None)
        assert not marker.exists(), "the pickle payload was deserialized"
        log = log_of(stack, "worker")
        assert "Task regsearch.run_trial[" not in log and "discarded" in log, "refused before any task was accepted"
        assert queue_is_empty(stack.settings), "the refused messages were discarded, not left to come back"

        # The same trial as JSON runs: the worker was listening, and only the pickle was refused.
        TrialQueue(make_celery(stack.settings)).send(trial_id)
        stack.wait_for(lambda: trial_store.job_trials(stack.db, job_id=job["id"])[0].state in ("complete", "pruned"),
                       90, "the JSON message to run the trial")
        stack.start("coordinator")
        done = stack.wait_job(job["id"], 60)
        assert done["status"] == "completed", stack.logs()
        rows = assert_books_agree(stack.db, stack.client, job["id"])
        assert len(rows) == 1 and rows[0].attempt == 1
        assert not marker.exists()


def queue_is_empty(settings: Settings) -> bool:
    if settings.broker_url and settings.broker_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(settings.broker_url)
        try:
            return client.llen(DEFAULT_QUEUE) == 0 and client.hlen("unacked") == 0
        finally:
            client.close()
    # The filesystem transport names each message <stamp>_<uuid>.<queue>.msg; notices to the
    # coordinator (regsearch.messaging.events) wait in the same folder and are not trial messages.
    return not any(path.name.endswith(f".{DEFAULT_QUEUE}.msg") for path in (settings.queue_dir / "in").iterdir())


# -- the bearer token ---------------------------------------------------------------------
TOKEN = "t0ken-" + "x" * 40


def test_every_route_but_health_needs_the_bearer_token(embedded_settings: Settings, tmp_path: Path) -> None:
    settings = embedded_settings.model_copy(update={"api_token": TOKEN})
    with running_stack(settings, tmp_path / "logs", start=False) as stack:
        stack.start("api")  # the stack's client sends the token
        job = stack.client.submit(small_spec("token"))
        authorized = httpx.Client(base_url=stack.settings.api_url, timeout=10,
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        anonymous = httpx.Client(base_url=stack.settings.api_url, timeout=10)
        try:
            spec_paths = authorized.get("/openapi.json").json()["paths"]
            routes = [(method.upper(), path) for path, item in spec_paths.items() for method in item]
            assert ("POST", "/jobs") in routes and ("GET", "/jobs/{job_id}/best") in routes, routes
            routes += [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/no/such/route"),
                       ("DELETE", "/jobs")]
            wrong = [{"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}, {"Authorization": "Bearer"},
                     {"X-Api-Token": TOKEN}]
            for method, template in routes:
                path = template.replace("{job_id}", job["id"]).replace("{number}", "0")
                body = small_spec("anonymous") if method == "POST" and path == "/jobs" else None
                if template in ("/healthz", "/readyz"):
                    assert anonymous.request(method, path).status_code == 200, path
                    continue
                for headers in [{}, *wrong]:
                    response = anonymous.request(method, path, json=body, headers=headers)
                    assert response.status_code == 401, (method, path, headers, response.status_code)
                    assert response.headers.get("www-authenticate") == "Bearer"
                    assert response.json() == {"detail": "missing or invalid bearer token"}
                answer = authorized.request(method, path, json=body)
                assert answer.status_code != 401 and answer.status_code < 500, (method, path, answer.status_code)
            assert authorized.get("/jobs").json()["count"] == 2, "only the authorized submissions made jobs"
            assert authorized.get(f"/jobs/{job['id']}").status_code == 200
        finally:
            authorized.close()
            anonymous.close()


def _api_argv(port: int, host: str) -> list[str]:
    return [sys.executable, "-m", "regsearch", "api", "--host", host, "--port", str(port)]


def _env(data_dir: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSEARCH_")}
    env["REGSEARCH_DATA_DIR"] = str(data_dir)
    if token is not None:
        env["REGSEARCH_API_TOKEN"] = token
    return env


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("token", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_a_public_bind_without_a_token_exits_2(data_dir: Path, token: str | None) -> None:
    port = free_port()
    result = subprocess.run(_api_argv(port, "0.0.0.0"), env=_env(data_dir, token), capture_output=True,
                            text=True, timeout=60, check=False, cwd=str(Path(__file__).resolve().parents[2]))
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "REGSEARCH_API_TOKEN" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not _listening(port)


def test_a_public_bind_with_a_token_serves_and_guards(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(_api_argv(port, "0.0.0.0"), env=_env(data_dir, TOKEN), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=str(Path(__file__).resolve().parents[2]))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _listening(port):
            assert process.poll() is None, (tmp_path / "api.log").read_text()
            time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/jobs").status_code == 401
            assert http.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        os.killpg(process.pid, 15)
        process.wait(15)
        log.close()


# -- dataset paths --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["../x.npz", "/etc/passwd", "sub/../../x.npz", "..\\x.npz", "./../x.npz", "/tmp/x.npz", "C:/x.npz"])
def test_a_dataset_path_outside_the_data_dir_is_refused_by_the_api(api_stack: Stack, path: str) -> None:
    before = api_stack.client.jobs()["count"]
    spec = small_spec("escape", dataset={"name": "npz", "path": path})
    response = httpx.post(f"{api_stack.settings.api_url}/jobs", json=spec, timeout=10)
    assert response.status_code == 422, (path, response.status_code, response.text)
    fields = [item["field"] for item in response.json()["detail"]]
    assert fields == ["dataset.path"], response.json()
    assert api_stack.client.jobs()["count"] == before, "a refused spec creates nothing"


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One API process (embedded) for the cheap request-level checks."""
    root = tmp_path_factory.mktemp("api")
    settings = Settings(data_dir=root / "data", database_url=None, broker_url=None, api_token=None)
    with running_stack(settings, root / "logs", start=False) as stack:
        stack.start("api")
        yield stack


def _links_out_of(data_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    rng = np.random.default_rng(0)
    np.savez(outside / "secret.npz", x=rng.normal(size=(200, 8)).astype(np.float32), y=np.arange(200) % 2)
    (data_dir / "link.npz").symlink_to(outside / "secret.npz")
    (data_dir / "linked-dir").symlink_to(outside, target_is_directory=True)


def test_embedded_a_symlink_out_of_the_data_dir_is_refused_at_submit(api_stack: Stack, tmp_path: Path) -> None:
    _links_out_of(api_stack.settings.data_dir, tmp_path)
    before = api_stack.client.jobs()["count"]
    for path in ("link.npz", "linked-dir/secret.npz", "missing.npz"):
        spec = small_spec("symlink", dataset={"name": "npz", "path": path})
        response = httpx.post(f"{api_stack.settings.api_url}/jobs", json=spec, timeout=10)
        assert response.status_code == 422, (path, response.text)
        (item,) = response.json()["detail"]
        assert item["field"] == "dataset.path" and path in item["message"], item
    assert api_stack.client.jobs()["count"] == before, "a refused spec creates nothing"


@pytest.fixture
def production_settings(data_dir: Path, pg_url: str, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, database_url=pg_url, broker_url=redis_url, api_token=None)


def test_a_symlink_out_of_the_data_dir_fails_the_trial_with_a_dataset_error(production_settings: Settings,
                                                                            tmp_path: Path) -> None:
    """In production the API does not see the workers' files: the first worker ends the job."""
    outside = tmp_path / "outside"
    outside.mkdir()
    # A valid dataset: if the worker followed the link, these trials would train and complete.
    rng = np.random.default_rng(0)
    np.savez(outside / "secret.npz", x=rng.normal(size=(200, 8)).astype(np.float32), y=np.arange(200) % 2)
    data_dir = production_settings.data_dir
    (data_dir / "link.npz").symlink_to(outside / "secret.npz")
    (data_dir / "linked-dir").symlink_to(outside, target_is_directory=True)
    with running_stack(production_settings, tmp_path / "logs") as stack:
        jobs = {path: stack.client.submit(small_spec("symlink", dataset={"name": "npz", "path": path},
                                                     budget={"n_trials": 2, "parallelism": 2, "max_retries": 2}))
                for path in ("link.npz", "linked-dir/secret.npz")}
        for path, job in jobs.items():
            done = stack.wait_job(job["id"], 90)
            rows = assert_books_agree(stack.db, stack.client, job["id"])
            assert done["status"] == "failed", done
            assert len(rows) == 2, [(r.number, r.state, r.error) for r in rows]
            for row in rows:
                assert row.state == "failed" and row.attempt == 1 and not row.retryable, (row.state, row.error)
                # the first worker's error ends the job: a trial not yet started says so instead
                assert row.error in (f"DatasetError: dataset.path: {path} resolves outside the data directory",
                                     EndReason.DATA_UNUSABLE), row.error
                assert row.metrics is None and row.recipe is None
            assert "resolves outside the data directory" in (done.get("error") or str(done)), done
        worker_log = log_of(stack, "worker")
        assert "Traceback" not in worker_log, worker_log[-3000:]
