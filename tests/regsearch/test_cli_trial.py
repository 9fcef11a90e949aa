"""``regsearch trial``: a line per epoch while it trains (stderr with --json), and its share of
the cores for torch's threads beside a running ``regsearch up``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from regsearch.cli.cores import available_cores, threads_per_process
from regsearch.cli.datalock import DataDirLock
from regsearch.cli.trial_lines import trial_threads
from tests.services.stack import small_spec

ROOT = Path(__file__).resolve().parents[2]
PARAMS = '{"placement": "bn-act-drop", "dropout": 0.3, "bn_momentum": 0.1}'


def _spec(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(small_spec(training={"epochs": epochs})))
    return path


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "REGSEARCH_DATA_DIR": str(data_dir), "COLUMNS": "80", "OMP_NUM_THREADS": "1"}


def test_a_line_per_epoch_comes_while_it_trains(tmp_path: Path, data_dir: Path) -> None:
    trial = subprocess.Popen([sys.executable, "-m", "regsearch", "trial", str(_spec(tmp_path, 500)), "--params", PARAMS],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(data_dir), cwd=ROOT)
    try:
        assert trial.stdout is not None
        first = trial.stdout.readline()
        assert first.startswith("training 500 epochs (") and "torch threads" in first, first
        line = trial.stdout.readline()
        assert line.startswith("epoch   1/500  train loss ") and " val loss " in line and line.rstrip().endswith(" s")
        assert len(line.rstrip("\n")) <= 80
        assert trial.poll() is None, "the first epoch's line comes before the trial ends"
    finally:
        trial.kill()
        trial.wait()


def test_lines_go_to_stderr_with_json_and_the_table_follows_them(tmp_path: Path, data_dir: Path) -> None:
    spec = _spec(tmp_path, 3)
    as_json = subprocess.run([sys.executable, "-m", "regsearch", "trial", str(spec), "--params", PARAMS, "--json",
                              "--threads", "1"], capture_output=True, text=True, env=_env(data_dir), cwd=ROOT, check=False)
    assert as_json.returncode == 0, as_json.stderr
    assert [e["epoch"] for e in json.loads(as_json.stdout)["epochs"]] == [1, 2, 3]
    assert [line.split()[1] for line in as_json.stderr.splitlines() if line.startswith("epoch")] == ["1/3", "2/3", "3/3"]
    assert "1 torch threads: --threads" in as_json.stderr
    human = subprocess.run([sys.executable, "-m", "regsearch", "trial", str(spec), "--params", PARAMS],
                           capture_output=True, text=True, env=_env(data_dir), cwd=ROOT, check=False)
    assert human.returncode == 0, human.stderr
    assert human.stdout.index("epoch 3/3") < human.stdout.index("Trial on")


def test_threads_beside_a_running_up_are_a_share_of_the_cores(data_dir: Path) -> None:
    assert trial_threads(data_dir, None) == (available_cores(), "every core")
    assert trial_threads(data_dir, 3) == (3, "--threads")
    lock = DataDirLock(data_dir).acquire(workers=2)  # as `up --workers 2` holds it
    try:
        threads, why = trial_threads(data_dir, None)  # flock: another open of the file sees it held
        assert threads == threads_per_process(3) and "beside regsearch up's 2 trial processes" in why
    finally:
        lock.release()
    assert trial_threads(data_dir, None)[1] == "every core"


def test_run_local_trial_sets_torchs_threads(data_dir: Path) -> None:
    import torch

    from regsearch.domain.spec import validate_spec
    from regsearch.worker.local import run_local_trial

    before = torch.get_num_threads()
    try:
        spec = validate_spec(small_spec(training={"epochs": 1}))
        run_local_trial(spec, json.loads(PARAMS), data_dir, device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
