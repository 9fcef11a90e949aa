"""Launch the dashboard: ``streamlit run dashboard/server.py`` as a child process (headless).

``dashboard/server.py`` serves the app (``dashboard/app.py``) through Streamlit's ASGI server with
the middleware that spares a page opened at its own address two 404s (``regsearch.dashboard.address``).

``regsearch dashboard`` and ``regsearch up`` call :func:`run_dashboard`; the browser test starts
the same command through :func:`dashboard_command`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from regsearch.config import Settings, is_loopback
from regsearch.dashboard.auth import configured_token

APP = Path(__file__).with_name("app.py")
SERVER = Path(__file__).with_name("server.py")  # serves APP
THEME = {
    "theme.base": "light",
    "theme.primaryColor": "#1f77b4",
}


def dashboard_env(settings: Settings) -> dict[str, str]:
    """The environment for the child: ours, plus every setting as a ``REGSEARCH_*`` variable."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        key = f"REGSEARCH_{name.upper()}"
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    env["REGSEARCH_DATABASE_URL"] = settings.sqlalchemy_url  # resolved once, here
    return env


def dashboard_command(port: int = 8501, host: str = "127.0.0.1") -> list[str]:
    """``python -m streamlit run dashboard/server.py`` with the server options the service uses."""
    options = {
        "server.headless": "true",
        "server.port": str(port),
        "server.address": host,
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "browser.gatherUsageStats": "false",
        "client.toolbarMode": "minimal",
        **THEME,
    }
    return [sys.executable, "-m", "streamlit", "run", str(SERVER), *(f"--{k}={v}" for k, v in options.items())]


def bind_refusal(settings: Settings, host: str) -> str | None:
    """Why the dashboard must not listen on ``host`` (beyond loopback without a token), or None.

    With ``REGSEARCH_API_TOKEN`` set, every page asks for it (``regsearch.dashboard.auth``)."""
    if is_loopback(host) or configured_token(settings):
        return None
    return (f"refusing to serve the dashboard on {host!r} without a token: anyone who can reach it could "
            "read every job. Set REGSEARCH_API_TOKEN to a long random secret (the dashboard then asks "
            "for it on every page), or bind to 127.0.0.1.")


def run_dashboard(settings: Settings, port: int = 8501, host: str = "127.0.0.1") -> int:
    """Run the dashboard in the foreground until it exits (or Ctrl-C / SIGTERM); its exit code.

    Exit code 2, without starting anything, for a bind beyond loopback without a token."""
    refusal = bind_refusal(settings, host)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    process = subprocess.Popen(dashboard_command(port, host), env=dashboard_env(settings), cwd=str(APP.parent))

    def _forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, _forward) if _main_thread() else None
    try:
        return _exit_code(process.wait())
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group: the child stops by itself; wait for it.
        return _exit_code(_stop(process))
    finally:
        if process.poll() is None:
            _stop(process)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_code(returncode: int) -> int:
    """The child's exit code; 0 when a stop signal ended it (uvicorn, under ``st.App``, shuts down
    cleanly and then re-raises the SIGTERM/SIGINT it caught, so its status is the signal's)."""
    return 0 if returncode in (-signal.SIGTERM, -signal.SIGINT) else returncode


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
