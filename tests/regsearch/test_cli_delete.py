"""``regsearch delete JOB``: asks first (``--yes`` skips), refuses a running job naming why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from regsearch.config import Settings
from regsearch.domain.states import JobState
from regsearch.store import jobs as job_store
from tests.services.stack import running_stack
from tests.services.test_delete import deletable_job, job_rows

ROOT = Path(__file__).resolve().parents[2]


def regsearch(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regsearch", *args], capture_output=True, text=True, input=stdin,
                          env={**os.environ, "COLUMNS": "80", **env}, timeout=120, cwd=ROOT, check=False)


@pytest.mark.timeout(180)
def test_delete_asks_then_deletes_and_refuses_a_running_job(tmp_path: Path, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)
    with running_stack(settings, tmp_path / "logs", start=False) as stack:
        stack.start("api")
        env = {"REGSEARCH_API_URL": stack.settings.api_url, "REGSEARCH_DATA_DIR": str(data_dir)}
        job_id = deletable_job(stack.db, stack.settings, n_complete=1)

        refused = regsearch("delete", job_id, env=env, stdin="n\n")
        assert refused.returncode == 1 and "not deleted" in refused.stderr
        assert "Delete job" in refused.stdout and "to-delete" in refused.stdout and "completed" in refused.stdout
        no_answer = regsearch("delete", job_id, env=env)  # end of input is no yes
        assert no_answer.returncode == 1 and job_rows(stack.db, job_id)["jobs"] == 1

        confirmed = regsearch("delete", job_id, env=env, stdin="y\n")
        assert confirmed.returncode == 0, confirmed.stderr
        assert f"job {job_id} deleted" in confirmed.stdout and set(job_rows(stack.db, job_id).values()) == {0}

        running = deletable_job(stack.db, stack.settings, n_complete=1)
        job_store.set_job_status(stack.db, job_id=running, status=JobState.RUNNING)
        conflict = regsearch("delete", running, "--yes", env=env)
        assert conflict.returncode == 2 and "cancel it first" in conflict.stderr and "Traceback" not in conflict.stderr
        job_store.set_job_status(stack.db, job_id=running, status=JobState.CANCELLED)
        assert regsearch("delete", running, "--yes", env=env).returncode == 0

        unknown = regsearch("delete", "nosuchjob", "--yes", env=env)
        assert unknown.returncode == 2 and "not found" in unknown.stderr
