"""Before anything starts: a missing database or an unreachable broker is one line naming it and
what to do (exit 2, no traceback); ``up`` refuses taken ports (naming what answers) and a data
directory another ``up`` holds (exit 1, nothing started), and says which database and broker it uses."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from regsearch.cli.datalock import DataDirBusy, DataDirLock, running_workers
from regsearch.cli.launcher import free_port
from regsearch.cli.preflight import mask_url
from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]


def regsearch(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regsearch", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80", **env}, timeout=timeout, cwd=ROOT, check=False)


def one_line(text: str) -> str:
    return " ".join(text.split())  # the console wraps long messages at 80 columns


@pytest.fixture
def missing_pg_url() -> Iterator[str]:
    """A URL (with a password, which must never be printed) to a database the server lacks."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        from tests.conftest import service_missing

        service_missing("PostgreSQL", exc)
    name = f"regsearch_missing_{uuid.uuid4().hex[:8]}"
    server = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgres@", "postgres:hunter2@")
    yield f"{server}/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.timeout(300)
def test_a_missing_database_is_named_with_the_command_that_creates_it(missing_pg_url: str, data_dir: Path) -> None:
    env = {"REGSEARCH_DATABASE_URL": missing_pg_url, "REGSEARCH_DATA_DIR": str(data_dir)}
    name = missing_pg_url.rsplit("/", 1)[1]
    for args in (("db", "upgrade"), ("up", "--no-dashboard", "--api-port", str(free_port())), ("api", "--port", str(free_port())),
                 ("coordinator",), ("worker",), ("dashboard", "--port", str(free_port())), ("demo",)):
        result = regsearch(*args, env=env)
        message = one_line(result.stderr)
        assert result.returncode == 2, (args, result.stderr)
        assert f"database '{name}' does not exist" in message and "regsearch db upgrade --create" in message, args
        assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout, args
        assert not (data_dir / "logs").exists(), f"{args}: nothing is started"
    created = regsearch("db", "upgrade", "--create", env=env)
    assert created.returncode == 0, created.stderr
    assert "created the database" in created.stdout and "up to date" in created.stdout and "hunter2" not in created.stdout
    again = regsearch("db", "upgrade", "--create", env=env)  # it exists now: just migrate
    assert again.returncode == 0 and "created" not in again.stdout


@pytest.mark.timeout(300)
def test_an_unreachable_broker_is_named(data_dir: Path) -> None:
    broker = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nobody listens there
    env = {"REGSEARCH_BROKER_URL": broker, "REGSEARCH_DATA_DIR": str(data_dir)}
    for args in (("up", "--no-dashboard", "--api-port", str(free_port())), ("worker",), ("coordinator",),
                 ("api", "--port", str(free_port()))):
        result = regsearch(*args, env=env)
        message = one_line(result.stderr)
        assert result.returncode == 2, (args, result.stderr)
        assert f"cannot reach the broker at {mask_url(broker)}" in message and "REGSEARCH_BROKER_URL" in message, args
        assert "Traceback" not in result.stderr and "hunter2" not in message, args
    assert not (data_dir / "logs").exists(), "nothing is started"


def test_mask_url_hides_passwords_only() -> None:
    assert mask_url("postgresql+psycopg://u:p%40ss@db:5432/x") == "postgresql+psycopg://u:***@db:5432/x"
    assert mask_url("redis://:secret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


@pytest.fixture
def http_server() -> Iterator[int]:
    """Some other program's web server on a free loopback port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("which", ["--api-port", "--dashboard-port"])
def test_up_refuses_a_taken_port_naming_what_answers_and_starts_nothing(
    http_server: int, data_dir: Path, which: str
) -> None:
    ports = {"--api-port": str(free_port()), "--dashboard-port": str(free_port()), which: str(http_server)}
    result = regsearch("up", *[x for item in ports.items() for x in item], env={"REGSEARCH_DATA_DIR": str(data_dir)})
    message = one_line(result.stderr)
    assert result.returncode == 1, result.stderr
    what = "the API" if which == "--api-port" else "the dashboard"
    assert f"port {http_server} ({what}) is taken by an HTTP server (SimpleHTTP" in message
    assert f"pid {os.getpid()}" in message, "the listening process is named when it is visible"
    assert "Nothing was started" in message and "Traceback" not in result.stderr
    assert not (data_dir / "logs").exists() and not (data_dir / "regsearch.db").exists()


def _hold_lock(data_dir: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from regsearch.cli.datalock import DataDirLock;"
         f"DataDirLock({str(data_dir)!r}).acquire(workers=3); print('locked', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_one_up_per_data_directory_and_a_stale_lock_is_taken_over(data_dir: Path, http_server: int) -> None:
    holder = _hold_lock(data_dir)
    try:
        assert running_workers(data_dir) == 3
        result = regsearch("up", "--api-port", str(free_port()), "--dashboard-port", str(free_port()),
                           env={"REGSEARCH_DATA_DIR": str(data_dir)})
        message = one_line(result.stderr)
        assert result.returncode == 1 and f"in use by regsearch up (pid {holder.pid})" in message, result.stderr
        assert not (data_dir / "logs").exists()
        with pytest.raises(DataDirBusy):
            DataDirLock(data_dir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without a word: its lock file stays, naming a dead pid, and is taken over.
    assert (data_dir / "up.lock").read_text().split()[0] == str(holder.pid)
    assert running_workers(data_dir) is None
    result = regsearch("up", "--api-port", str(http_server), env={"REGSEARCH_DATA_DIR": str(data_dir)})
    assert result.returncode == 1 and "is taken by" in result.stderr and "in use by" not in result.stderr
    with DataDirLock(data_dir) as lock:
        assert lock.fd is not None and (data_dir / "up.lock").read_text().split()[0] == str(os.getpid())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_says_which_database_and_broker_it_uses_and_a_second_up_is_refused(
    pg_url: str, redis_url: str, data_dir: Path, tmp_path: Path
) -> None:
    api_port = free_port()
    secret_url = pg_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it; it must not be printed
    env = {**os.environ, "REGSEARCH_DATA_DIR": str(data_dir), "REGSEARCH_DATABASE_URL": secret_url,
           "REGSEARCH_BROKER_URL": redis_url, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    up = subprocess.Popen([sys.executable, "-m", "regsearch", "up", "--workers", "1", "--no-dashboard",
                           "--api-port", str(api_port)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(line.startswith("ready.") for line in lines):
            lines.append(up.stdout.readline())
            assert up.poll() is None or lines[-1], "".join(lines)
        text = "".join(lines)
        assert "ready." in text, text
        assert f"database {pg_url.replace('postgres@', 'postgres:***@')}" in text, text
        assert f"broker {redis_url}" in text and "hunter2" not in text
        # A second `up` on another data directory but the same port: refused, naming this API.
        other = tmp_path / "other"
        second = regsearch("up", "--no-dashboard", "--api-port", str(api_port), env={
            "REGSEARCH_DATA_DIR": str(other), "REGSEARCH_DATABASE_URL": pg_url, "REGSEARCH_BROKER_URL": redis_url})
        assert second.returncode == 1 and f"port {api_port} (the API) is taken by a regsearch API" in one_line(second.stderr)
        # ... and on the same data directory: refused by the lock, before any port is looked at.
        third = regsearch("up", "--no-dashboard", "--api-port", str(free_port()), env={"REGSEARCH_DATA_DIR": str(data_dir)})
        assert third.returncode == 1 and f"(pid {up.pid})" in one_line(third.stderr)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
    assert running_workers(data_dir) is None, "the lock goes with the last component"
