"""A many-host regsearch deployment inside network namespaces, for the cluster tests and bench.

Hosts (each a namespace on one bridge, :mod:`tests.cluster.netns`):

- ``db``: its own PostgreSQL (initdb'd into a temp dir, run as the ``postgres`` user) and its own
  redis-server, both on the host's loopback, served to the others through fault proxies
  (:mod:`tests.cluster.faultproxy`) on two outside addresses: ``pg_address`` and
  ``redis_address``;
- ``ctl``: ``regsearch api`` and ``regsearch coordinator`` (more coordinators on ``ctl2`` ...);
- ``w1``, ``w2``: ``regsearch worker``.

Each process gets the ``REGSEARCH_*`` environment a real deployment sets (database and broker
URLs naming the db host's addresses, a token for the API on a non-loopback address, a shared
artifact store) and nothing else of the test's. :meth:`Cluster.close` stops every process
(their whole process groups), the proxies and the namespaces, and removes the temp dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regsearch.client import Client
from regsearch.config import Settings
from tests.cluster.faultproxy import FaultProxy
from tests.cluster.netns import PREFIX, Network

PG_BIN = Path(os.environ.get("REGSEARCH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
API_PORT = 8000
TOKEN = "cluster-test-token-0123456789abcdef"
# A lease short enough that a test can outlast it; the rest as tests/services/stack.py's.
TIMINGS = {"REGSEARCH_HEARTBEAT_INTERVAL_S": "0.5", "REGSEARCH_HEARTBEAT_GRACE_S": "6",
           "REGSEARCH_COORDINATOR_POLL_S": "0.2", "REGSEARCH_RESEND_AFTER_S": "5",
           "REGSEARCH_COORDINATOR_LEASE_S": "3"}
LEASE_S = 3.0


class Cluster:
    def __init__(self, *, workers: int = 2, coordinator_hosts: int = 1, env: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{os.getpid()}-"))
        self.tmp.chmod(0o755)  # postgres (not root) must reach its data dir below
        self.net = Network()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.proxies: dict[str, FaultProxy] = {}
        self.extra_env = env or {}
        try:
            self.pg_address, self.redis_address = self.net.add_host("db", extra_addresses=1)
            self.ctl_hosts = ["ctl"] + [f"ctl{i}" for i in range(2, coordinator_hosts + 1)]
            for host in self.ctl_hosts:
                self.net.add_host(host)
            self.worker_hosts = [f"w{i}" for i in range(1, workers + 1)]
            for host in self.worker_hosts:
                self.net.add_host(host)
            self._start_database()
        except BaseException:
            self.close()
            raise

    # -- addresses and settings ---------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.pg_address}:5432/regsearch"

    @property
    def broker_url(self) -> str:
        return f"redis://{self.redis_address}:6379/0"

    @property
    def api_url(self) -> str:
        return f"http://{self.net.hosts['ctl']}:{API_PORT}"

    def env(self, host: str) -> dict[str, str]:
        """What a deployment sets on ``host``: its own data dir, everything else shared."""
        data = self.tmp / "hosts" / host
        data.mkdir(parents=True, exist_ok=True)
        return {"REGSEARCH_DATABASE_URL": self.database_url, "REGSEARCH_BROKER_URL": self.broker_url,
                "REGSEARCH_API_TOKEN": TOKEN, "REGSEARCH_API_URL": self.api_url,
                "REGSEARCH_DATA_DIR": str(data), "REGSEARCH_ARTIFACT_URL": (self.tmp / "artifacts").as_uri(),
                **TIMINGS, **self.extra_env}

    def settings(self) -> Settings:
        """The test's own view (from the root namespace, through the tester's link)."""
        return Settings(database_url=self.database_url, broker_url=self.broker_url, api_url=self.api_url,
                        api_token=TOKEN, data_dir=self.tmp / "tester")

    def client(self, timeout_s: float = 10) -> Client:
        return Client(self.api_url, TOKEN, timeout_s=timeout_s)

    # -- the database host --------------------------------------------------------------------
    def _start_database(self) -> None:
        pgdata = self.tmp / "pgdata"
        pgdata.mkdir()
        subprocess.run(["chown", "postgres:postgres", str(pgdata)], check=True)
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(pgdata), "-E", "UTF8",
                        "--locale=C", "--auth=trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "port=5432", "-c", f"unix_socket_directories={pgdata}",
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=300"]
        self.spawn("db", "postgres", ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(pgdata),
                                      *settings], env={})
        redis_dir = self.tmp / "redis"
        redis_dir.mkdir()
        self.spawn("db", "redis", ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
                                   "--appendonly", "no", "--protected-mode", "no", "--dir", str(redis_dir)], env={})
        tester = (self.net.tester_address,)
        self.proxies["pg"] = FaultProxy((self.pg_address, 5432), ("127.0.0.1", 5432),
                                        enter=lambda: self.net.enter("db"), exempt=tester).start()
        self.proxies["redis"] = FaultProxy((self.redis_address, 6379), ("127.0.0.1", 6379),
                                           enter=lambda: self.net.enter("db"), exempt=tester).start()
        self.wait_for(self._database_up, 60, "PostgreSQL on the db host")
        self._psql("CREATE DATABASE regsearch")

    def _psql(self, sql: str) -> None:
        subprocess.run(self.net.exec_argv("db", ["runuser", "-u", "postgres", "--", str(PG_BIN / "psql"),
                                                 "-h", "127.0.0.1", "-U", "postgres", "-c", sql]),
                       check=True, capture_output=True, timeout=30)

    def _database_up(self) -> bool:
        probe = subprocess.run(self.net.exec_argv("db", [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-q"]),
                               check=False, capture_output=True, timeout=10)
        return probe.returncode == 0

    # -- processes ----------------------------------------------------------------------------
    def spawn(self, host: str, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` on ``host`` in its own process group, its output in ``logs/<name>.log``."""
        base = {key: value for key, value in os.environ.items() if not key.startswith("REGSEARCH_")}
        full_env = {**base, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                    **(self.env(host) if env is None else env)}
        log_dir = self.tmp / "logs"
        log_dir.mkdir(exist_ok=True)
        with open(log_dir / f"{name}.log", "ab") as log:
            # Its own hostname too (a UTS namespace): workers name themselves after their host.
            named = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]
            process = subprocess.Popen(self.net.exec_argv(host, named), env=full_env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, cwd=self.tmp)
        self.processes[name] = process
        return process

    def regsearch(self, host: str, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.spawn(host, name, [sys.executable, "-m", "regsearch", *args],
                   env=None if env is None else {**self.env(host), **env})

    def start_services(self, *, coordinators: int | None = None, concurrency: int = 1) -> None:
        """As the compose file: a one-shot ``regsearch db upgrade``, then the API and coordinator(s)
        on the control host(s) and one worker per worker host."""
        migrate = subprocess.run(self.net.exec_argv("ctl", [sys.executable, "-m", "regsearch", "db", "upgrade"]),
                                 check=False, env={**os.environ, **self.env("ctl")}, capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, f"regsearch db upgrade: {migrate.stdout}{migrate.stderr}"
        self.regsearch("ctl", "api", "api", "--host", self.net.hosts["ctl"], "--port", str(API_PORT))
        for index, host in enumerate(self.ctl_hosts[: coordinators or len(self.ctl_hosts)]):
            self.regsearch(host, f"coordinator{index + 1}", "coordinator")
        for host in self.worker_hosts:
            self.regsearch(host, f"worker-{host}", "worker", "--concurrency", str(concurrency), "--device", "cpu")
        client = self.client()
        try:
            self.wait_for(client.ready, 90, "the API on the control host")
        finally:
            client.close()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def dead(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def log(self, name: str) -> str:
        path = self.tmp / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-tail:]}" for name in sorted(self.processes))

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                value = predicate()
                if value:
                    return value
            dead = self.dead()
            if dead:
                raise AssertionError(f"{dead} exited while waiting for {what}\n{self.logs()}")
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{self.logs()}")

    def close(self) -> None:
        processes = list(self.processes.values())
        self.processes.clear()
        for process in processes:  # all at once: TERM, a few seconds together, then KILL
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()
        self.net.destroy()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def retried(call: Any, attempts: int = 20) -> Any:
    """A call again after a 503 (the database was unreachable for a moment), as a client does."""
    from regsearch.client import ApiError

    for attempt in range(attempts):
        try:
            return call()
        except ApiError as exc:
            if exc.status != 503 or attempt == attempts - 1:
                raise
            time.sleep(0.5)
    return None
