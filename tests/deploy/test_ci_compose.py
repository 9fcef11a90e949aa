"""deploy/ci-compose.sh, the deployment test CI runs after `make test` (.ci/run): its no-engine paths.

The test itself (images built, the stack up, a job through containers) needs a container engine
and minutes; .ci/run runs it. Here: without an engine it skips, except under CI=true, where that
is a failure; and its closing line is one CI reads as a test runner's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.files import ROOT

SCRIPT = ROOT / "deploy" / "ci-compose.sh"
CLOSING = re.compile(r"^ci-compose: (\d+) passed, (\d+) failed(, (\d+) skipped)?$", re.MULTILINE)

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "CI"}
    full.update(DOCKER=str(tmp_path / "no-such-docker"), REGSEARCH_CI_CACHE=str(tmp_path / "cache"), **env)
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=60, check=False)


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=30)


def test_without_an_engine_it_says_so_and_skips(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SKIPPED" in done.stdout and "no container engine" in done.stdout
    assert CLOSING.findall(done.stdout)[-1][::3] == ("0", "1")  # 0 passed ... 1 skipped


def test_under_ci_a_missing_engine_is_a_failure(tmp_path: Path) -> None:
    done = run(tmp_path, CI="true")
    assert done.returncode != 0
    assert "FAILED" in done.stderr and "no-such-docker" in done.stderr
    passed, failed = CLOSING.findall(done.stdout)[-1][:2]
    assert (passed, failed) == ("0", "1")


def test_ci_runs_it_after_the_unit_tests() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert lines.index("make test") < lines.index("bash deploy/ci-compose.sh")
