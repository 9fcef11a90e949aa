"""A real service stack for tests: API, coordinator and a Celery worker as child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from regsearch.cli.launcher import Component, Supervisor, cli_command, free_port
from regsearch.client import Client
from regsearch.config import Settings
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade

FAST_TIMINGS = {"heartbeat_interval_s": 0.5, "heartbeat_grace_s": 6.0, "coordinator_poll_s": 0.2, "resend_after_s": 5.0}




def small_spec(name: str = "e2e", **overrides: Any) -> dict[str, Any]:
    """A job that trains in seconds: digits, a 32-32 MLP, a few epochs."""
    spec: dict[str, Any] = {
        "name": name,
        "dataset": {"name": "digits"},
        "model": {"family": "mlp", "hidden": [32, 32]},
        "space": {"placement": ["bn-act-drop", "act-drop", "bn-act", "act"], "dropout": {"low": 0.0, "high": 0.5}},
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.003},
        "budget": {"n_trials": 6, "parallelism": 2},
        "sampler": "tpe",
        "pruner": "median",
    }
    for key, value in overrides.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    return spec


class Stack:
    """The processes, a client and direct database access for assertions."""

    def __init__(self, settings: Settings, log_dir: Path, workers: int = 2) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.workers = workers
        self.port = free_port()
        self.settings = settings.model_copy(update={"api_url": f"http://127.0.0.1:{self.port}"})
        upgrade(self.settings.sqlalchemy_url)
        self.db = Database(self.settings.sqlalchemy_url)
        self.client = Client(self.settings)
        self.supervisor = Supervisor(self.settings, [], str(log_dir))
        self._threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def start(self, *names: str, env: dict[str, str] | None = None) -> None:
        """Start components by name (api, coordinator, worker); all three by default."""
        wanted = names or ("api", "coordinator", "worker")
        argv = {
            "api": cli_command("api", "--port", str(self.port)),
            "coordinator": cli_command("coordinator"),
            "worker": cli_command("worker", "--concurrency", str(self.workers), "--loglevel", "INFO"),
        }
        for name in wanted:
            component = Component(name, argv[name], {**self._threads, **(env or {})})
            self.supervisor.components.append(component)
            sub = Supervisor(self.settings, [component], str(self.log_dir))
            sub.start()
            self.supervisor.processes[name] = sub.processes[name]
        if "api" in wanted:
            self.wait_for(self.client.ready, 60, "the API to be ready")

    def pid(self, name: str) -> int:
        return self.supervisor.processes[name].pid

    def kill(self, name: str, sig: int = signal.SIGKILL, *, group: bool = True, wait_s: float = 10) -> None:
        """Signal a component (its whole process group by default) and reap it."""
        process = self.supervisor.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # nothing of it may outlive the test

    def stop(self) -> None:
        self.supervisor.stop(timeout_s=5)
        self.client.close()
        self.db.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            dead = self.supervisor.dead()
            if dead:
                raise AssertionError(f"{dead} exited while waiting for {what}\n{self.logs()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{self.logs()}")

    def wait_job(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            job = self.client.job(job_id)
            return job if job["status"] in ("completed", "failed", "cancelled") else None

        return self.wait_for(finished, timeout_s, f"job {job_id} to finish")


@contextlib.contextmanager
def running_stack(settings: Settings, log_dir: Path, *, workers: int = 2, start: bool = True) -> Iterator[Stack]:
    # Fast timings, except those the test set itself (Settings remembers which it was given).
    fast = {k: v for k, v in FAST_TIMINGS.items() if k not in settings.model_fields_set}
    stack = Stack(settings.model_copy(update=fast), log_dir, workers)
    try:
        if start:
            stack.start()
        yield stack
    finally:
        stack.stop()


# -- helpers for the fault, security and load tests (appended; nothing above changes) --------
def start_as(stack: Stack, name: str, component: str = "worker", *, env: dict[str, str] | None = None,
             concurrency: int | None = None) -> None:
    """Start one more ``component`` under its own ``name`` (a second worker: "worker2").

    Its log is ``<log_dir>/<name>.log``; ``stack.kill(name)`` and ``stack.stop()`` handle it.
    """
    argv = {
        "api": cli_command("api", "--port", str(stack.port)),
        "coordinator": cli_command("coordinator"),
        "worker": cli_command("worker", "--concurrency", str(concurrency or stack.workers), "--loglevel", "INFO"),
    }[component]
    spec = Component(name, argv, {**stack._threads, **(env or {})})
    stack.supervisor.components.append(spec)
    sub = Supervisor(stack.settings, [spec], str(stack.log_dir))
    sub.start()
    stack.supervisor.processes[name] = sub.processes[name]


def log_of(stack: Stack, name: str) -> str:
    """The whole log of one component (``Stack.logs`` keeps only each log's tail)."""
    path = stack.log_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


class RedisServer:
    """A private ``redis-server`` on a free port, for tests that stop or restart the broker.

    ``persistent=True``: AOF on (``appendfsync everysec``; SHUTDOWN flushes it), as production
    runs it; ``False``: no AOF and no RDB snapshots, so a restart starts empty. The shared
    Redis on 6379 is never touched.
    """

    def __init__(self, directory: Path, *, persistent: bool = True, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def start(self, timeout_s: float = 10) -> RedisServer:
        persistence = (["--appendonly", "yes", "--save", ""] if self.persistent
                       else ["--appendonly", "no", "--save", ""])
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--daemonize", "no", "--protected-mode", "no", "--maxmemory-policy", "noeviction",
                "--logfile", str(self.directory / "redis.log"), *persistence]
        self.process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: "
                                   f"{(self.directory / 'redis.log').read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(Exception):
                client = self.client()
                try:
                    if client.ping():
                        return self
                finally:
                    client.close()
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout_s}s")

    def shutdown(self, timeout_s: float = 10) -> None:
        """``SHUTDOWN`` (AOF flushed when persistent), then wait for the process to exit."""
        client = self.client()
        with contextlib.suppress(Exception):
            client.shutdown(nosave=not self.persistent)
        client.close()
        if self.process is not None:
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)

    def __enter__(self) -> RedisServer:  # noqa: PYI034 - stack.py keeps its imports
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.kill()

