"""``regsearch demo`` ends by saying how to run the CLI: ``make demo`` runs it from a virtual
environment that is not activated, so a bare ``regsearch`` would not be found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services.stack import small_spec

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _without_venv(path: str) -> str:
    return os.pathsep.join(p for p in path.split(os.pathsep) if Path(p) != VENV_BIN and p != str(VENV_BIN))


def _next_steps(path: str) -> list[str]:
    code = "from pathlib import Path; from regsearch.cli.demo import next_steps; print(*next_steps('J', Path('.regsearch')), sep='\\n')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                            env={**os.environ, "PATH": path})
    return result.stdout.splitlines()


def test_the_last_lines_name_the_venvs_command_unless_regsearch_is_on_path() -> None:
    if not (VENV_BIN / "regsearch").exists():
        pytest.skip("regsearch is not installed as a script beside this python")
    command = os.path.relpath(VENV_BIN / "regsearch", ROOT)
    lines = _next_steps(_without_venv(os.environ.get("PATH", "")))
    assert lines[0].startswith(f"The regsearch command is in the virtual environment: run it as {command} ")
    assert f"`source {os.path.relpath(VENV_BIN / 'activate', ROOT)}`" in lines[0]
    assert lines[1].startswith(f"See it with `{command} up` from this folder")
    assert "http://127.0.0.1:8501/?job=J" in lines[1]
    # What it prints runs, from where the demo ran.
    version = subprocess.run([command, "--version"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert version.returncode == 0 and version.stdout.startswith("regsearch ")
    # With the venv on PATH (activated), plain `regsearch` is the command.
    assert _next_steps(f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")[0].startswith("See it with `regsearch up`")


def test_the_readmes_using_it_starts_with_how_to_run_the_cli() -> None:
    readme = (ROOT / "README.md").read_text()
    using = readme.split("## Using it", 1)[1].split("\n## ", 1)[0]
    first_block = using.split("    regsearch up", 1)[0]  # what comes before the first command
    assert ".venv/bin/regsearch" in first_block and "source .venv/bin/activate" in first_block


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_demo_ends_with_the_way_to_run_the_cli(tmp_path: Path, data_dir: Path) -> None:
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(small_spec("tiny-demo", training={"epochs": 2}, budget={"n_trials": 2, "parallelism": 1},
                                          pruner="none")))
    result = subprocess.run([sys.executable, "-m", "regsearch", "demo", "--workers", "1", "--spec", str(spec)],
                            capture_output=True, text=True, cwd=ROOT, timeout=360, check=False,
                            env={**os.environ, "REGSEARCH_DATA_DIR": str(data_dir), "COLUMNS": "80",
                                 "OMP_NUM_THREADS": "1", "PATH": _without_venv(os.environ.get("PATH", ""))})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tail = " ".join(result.stdout.split()[-80:])
    command = os.path.relpath(VENV_BIN / "regsearch", ROOT)
    assert f"run it as {command}" in tail and f"See it with `{command} up`" in tail, tail
