"""What the dashboard's browser tests share: Debian's chromium (skip, or fail under CI, without it),
a free port, and the real dashboard served on it (``regsearch.dashboard.run.dashboard_command``)
until the test is done."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regsearch.config import Settings
from regsearch.dashboard.run import dashboard_command, dashboard_env

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("REGSEARCH_TEST_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--disable-extensions", "--no-first-run", "--mute-audio"]
WIDTH = 1440


def missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what}; CI must run the browser test for real (apt-get install -y chromium)")
    pytest.skip(what)


def chromium(*extra_args: str) -> Iterator[Any]:
    """Debian's chromium through Playwright, headless (for a fixture: ``yield from chromium()``);
    without either, the test skips (fails under CI)."""
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the python playwright package is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield launched
        finally:
            launched.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def serve(settings: Settings, log: Path) -> Iterator[str]:
    """The real dashboard on a free port for ``settings`` (its output in ``log``); yields its URL,
    then stops it (for a fixture: ``yield from serve(...)``)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(dashboard_command(port), env=dashboard_env(settings), cwd=ROOT,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_drawn(page: object) -> None:
    """Until the script has finished (no 'running' status) and every chart has drawn its SVG."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => !document.querySelector('[data-testid=stStatusWidget]')"
        " && [...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'))"
    )
