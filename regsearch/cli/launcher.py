"""``regsearch up``: the components as child processes, stopped together.

Each child runs in its own process group, so stopping one also stops what it forked (a Celery
worker's pool, Streamlit's server) and nothing is left behind after Ctrl-C or the demo. With a
``log_dir``, each child's output (Celery's banner, uvicorn's and Alembic's lines, ...) goes to
``<log_dir>/<component>.log`` instead of the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from regsearch.config import Settings


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a child process to bind)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "regsearch", *args]


def plan(settings: Settings, *, workers: int, api_port: int, dashboard_port: int | None) -> list[Component]:
    """What ``up`` starts: API, coordinator, one worker with ``workers`` trial processes, dashboard."""
    components = [
        Component("api", cli_command("api", "--port", str(api_port))),
        Component("coordinator", cli_command("coordinator")),
        # the worker command sizes each trial process's torch threads (regsearch.cli.cores.default_threads)
        Component("worker", cli_command("worker", "--concurrency", str(workers))),
    ]
    if dashboard_port is not None:
        components.append(Component("dashboard", cli_command("dashboard", "--port", str(dashboard_port))))
    return components


class Supervisor:
    """Starts components, notices one that dies, stops them all (TERM, then KILL)."""

    def __init__(self, settings: Settings, components: list[Component], log_dir: str | None = None,
                 pass_fds: tuple[int, ...] = ()) -> None:
        """``pass_fds``: descriptors every child inherits (``up``'s data directory lock)."""
        self.settings = settings
        self.components = components
        self.log_dir = log_dir
        self.pass_fds = pass_fds
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        # Children see exactly this supervisor's settings, whatever .env or defaults say.
        for name, value in self.settings.model_dump().items():
            if value is not None:  # a SecretStr prints as stars: hand its value on
                secret = getattr(value, "get_secret_value", None)  # a SecretStr prints as stars
                env[f"REGSEARCH_{name.upper()}"] = str(secret() if secret is not None else value)
        env["REGSEARCH_DATABASE_URL"] = self.settings.sqlalchemy_url
        env.update(extra)
        return env

    def log_path(self, name: str) -> str | None:
        """Where component ``name`` writes its output (None: to this process's terminal)."""
        return os.path.join(self.log_dir, f"{name}.log") if self.log_dir else None

    def log_tail(self, name: str, lines: int = 8) -> list[str]:
        """The last ``lines`` lines of a component's log (what it said before it died)."""
        path = self.log_path(name)
        if path is None or not os.path.exists(path):
            return []
        with open(path, "rb") as log:
            log.seek(max(0, os.path.getsize(path) - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def start(self) -> None:
        for component in self.components:
            out = None
            path = self.log_path(component.name)
            if path is not None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                out = open(path, "ab")  # noqa: SIM115 - handed to the child, closed here right after
                out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(component.argv[1:])}\n".encode())
                out.flush()
            try:
                self.processes[component.name] = subprocess.Popen(
                    component.argv, env=self._env(component.env), start_new_session=True,
                    stdout=out, stderr=subprocess.STDOUT if out else None, pass_fds=self.pass_fds,
                )
            finally:
                if out is not None:
                    out.close()  # the child holds its own copy

    def dead(self) -> list[tuple[str, int]]:
        """Components that exited, with their exit codes."""
        return [(name, p.returncode) for name, p in self.processes.items() if p.poll() is not None]

    def stop(self, timeout_s: float = 10.0) -> None:
        for process in self.processes.values():
            # TERM the leader only: it stops its own children in order (a Celery worker whose
            # pool children are TERMed alongside it can hang in billiard's pool finalizer).
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group may hold grandchildren (pool processes) even after the leader exited.
            _signal_group(process, signal.SIGKILL)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
