"""``run_dashboard``: the real ``streamlit run`` child, reachable, stopped cleanly by SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from regsearch.config import Settings
from regsearch.dashboard.run import dashboard_command, dashboard_env
from tests.dashboard.browsing import ROOT, free_port, wait_healthy

pytestmark = pytest.mark.xdist_group("dashboard")


def test_command_and_environment(empty_db: Settings) -> None:
    command = dashboard_command(port=8765, host="0.0.0.0")
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("dashboard/server.py")
    for option in ("--server.headless=true", "--browser.gatherUsageStats=false", "--server.port=8765",
                   "--server.address=0.0.0.0", "--theme.base=light"):
        assert option in command
    env = dashboard_env(empty_db)
    assert env["REGSEARCH_DATABASE_URL"] == empty_db.sqlalchemy_url
    assert env["REGSEARCH_DATA_DIR"] == str(empty_db.data_dir)


def test_run_dashboard_serves_and_stops_on_sigterm(empty_db: Settings, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    script = ("import sys; from pathlib import Path; from regsearch.config import Settings; "
              "from regsearch.dashboard.run import run_dashboard; "
              f"sys.exit(run_dashboard(Settings(data_dir=Path({str(empty_db.data_dir)!r})), port={port}))")
    with log.open("wb") as out:
        parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", parent, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.status == 200
        started = time.monotonic()
        parent.send_signal(signal.SIGTERM)  # forwarded to streamlit; run_dashboard returns its code
        assert parent.wait(timeout=20) == 0, log.read_text()[-2000:]
        assert time.monotonic() - started < 20
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
