"""Trainer plugins with a real worker (issue 28): the example trainer searched through the CLI, its
kept weights reproducing its test accuracy; a plugin family accepted by submit/validate/inspect
once a worker publishes it; every bad-trainer case ending as it should.

examples/trainer is pip-installed into this environment (tests/example_packages.py). The other
plugins (a family, three broken trainers) live in a folder on the worker's and the CLI's
PYTHONPATH with a ``.dist-info`` of their own: entry points found there, nothing installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from regsearch import ApiError, load_model
from regsearch.config import Settings
from regsearch.domain.spec import JobSpec
from tests.example_packages import install_example
from tests.services.stack import Stack, running_stack, small_spec
from tests.services.test_weights_e2e import test_accuracy_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PLUGINS = '''
"""Test plugins: a tiny family and trainers that misbehave."""
import math
import time

import pydantic
from torch import nn


class TinyFam:
    class Knobs(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        width: int = 16

    def slots(self, knobs, input_shape):
        return 1

    def build(self, knobs, input_shape, n_classes, slot):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), knobs.width),
                             slot(0, knobs.width, 0), nn.Linear(knobs.width, n_classes))


def raises(ctx):
    """Raises at once."""
    raise RuntimeError("boom from the trainer")


def stalls(ctx):
    """Reports one epoch, then hangs."""
    ctx.build_model()
    ctx.report(1, train_loss=1.0, val_loss=1.0, val_acc=0.1, train_acc=0.1)
    time.sleep(300)  # a daemon thread: the trial ends without it


def nonfinite(ctx):
    """Reports a NaN loss."""
    ctx.report(1, train_loss=float("nan"), val_loss=1.0, val_acc=0.1, train_acc=0.1)
'''

ENTRY_POINTS = """
[regsearch.models]
tinyfam = rs_test_plugins:TinyFam

[regsearch.trainers]
raises = rs_test_plugins:raises
stalls = rs_test_plugins:stalls
nonfinite = rs_test_plugins:nonfinite
"""


def plugin_folder(root: Path) -> Path:
    folder = root / "plugins"
    (folder / "rs_test_plugins-0.1.dist-info").mkdir(parents=True)
    (folder / "rs_test_plugins.py").write_text(textwrap.dedent(PLUGINS))
    (folder / "rs_test_plugins-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rs-test-plugins\nVersion: 0.1\n")
    (folder / "rs_test_plugins-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


@pytest.fixture
def trainer_stack(sqlite_settings: Settings, tmp_path: Path) -> Iterator[tuple[Stack, Path]]:
    installed_here = install_example("trainer", "regsearch-sgd-trainer")
    folder = plugin_folder(tmp_path)
    try:
        with running_stack(sqlite_settings, tmp_path / "logs", start=False) as stack:
            stack.start(env={"PYTHONPATH": str(folder), "REGSEARCH_TRAINER_REPORT_TIMEOUT_S": "30"})
            yield stack, folder
    finally:
        if installed_here:
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", "regsearch-sgd-trainer"],
                           check=False, timeout=120)


def cli(stack: Stack, cwd: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSEARCH_")}
    env["PYTHONPATH"] = str(folder)
    env["REGSEARCH_DATA_DIR"] = str(stack.settings.data_dir)
    return subprocess.run([sys.executable, "-m", "regsearch", "--api-url", stack.settings.api_url, *args],
                          capture_output=True, text=True, timeout=180, cwd=cwd, env=env, check=False)


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def one_trial_job(stack: Stack, trainer: str) -> list[dict]:
    spec = small_spec(trainer, training={"trainer": trainer}, budget={"n_trials": 1, "parallelism": 1,
                                                                        "max_retries": 0})
    job = stack.client.submit(spec)
    stack.wait_job(job["id"], 120)
    return stack.client.trials(job["id"])["items"]


def test_trainer_plugins_with_a_real_worker(trainer_stack: tuple[Stack, Path], tmp_path: Path) -> None:
    stack, folder = trainer_stack
    wanted = {"builtin", "sgd-cosine", "raises", "stalls", "nonfinite"}
    stack.wait_for(lambda: wanted <= {t["name"] for t in stack.client.trainers()}, 120,
                   "the worker to publish its trainers")
    offered = {t["name"]: t for t in stack.client.trainers()}
    assert offered["builtin"]["source"] == "builtin" and offered["sgd-cosine"]["source"] == "plugin"
    assert offered["sgd-cosine"]["options"]["properties"]["lr"]["default"] == 0.1
    assert "tinyfam" in {f["name"] for f in stack.client.families()}  # trainers are not families

    # the example trainer, submitted with the CLI, searched to the end
    spec = small_spec("sgd", training={"trainer": "sgd-cosine", "epochs": 3,
                                       "options": {"lr": 0.05, "batch_size": 64, "mixup": 0.2}},
                      budget={"n_trials": 4, "parallelism": 2, "keep_weights": 2}, pruner="none")
    path = write_spec(tmp_path / "sgd.yaml", spec)
    submitted = cli(stack, tmp_path, folder, "submit", str(path))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    done = stack.wait_job(job_id, 300)
    counts = done["counts"]
    errors = [t["error"] for t in stack.client.trials(job_id)["items"] if t["error"]]
    assert done["status"] == "completed" and counts["complete"] >= 1 and counts["failed"] == 0, (errors, stack.logs())
    top = stack.client.best(job_id, 1)[0]
    saved = cli(stack, tmp_path, folder, "best", job_id, "--top", "1", "--save", str(tmp_path / "saved"))
    assert saved.returncode == 0, saved.stderr
    model = load_model(tmp_path / "saved" / str(top["number"]))
    assert test_accuracy_of(model, JobSpec.model_validate(done["spec"]), stack.settings.data_dir,
                            top["recipe"]["input_shape"]) == top["metrics"]["test_acc"]

    # a plugin family that only the worker publishes: validate, inspect and submit accept it
    tiny = small_spec("tiny", budget={"n_trials": 2, "parallelism": 2})
    tiny["model"] = {"family": "tinyfam", "width": 8}
    family = write_spec(tmp_path / "tiny.yaml", tiny)
    for command in ("validate", "inspect", "submit"):
        answer = cli(stack, tmp_path, folder, command, str(family))
        assert answer.returncode == 0, (command, answer.stdout, answer.stderr)
    assert stack.client.submit(family)["status"] in ("queued", "running")  # Client.submit(path) too

    # refused at submit, naming the field: CLI (exit 2) and API (422)
    bad = {
        "training.trainer": small_spec("unknown", training={"trainer": "nosuch"}),
        "training.options.lr": small_spec("options", training={"trainer": "sgd-cosine", "options": {"lr": -1}}),
        "training.options": small_spec("builtin-options", training={"options": {"lr": 0.1}}),
        "budget.pack": small_spec("pack", training={"trainer": "sgd-cosine"}, budget={"pack": 4}),
    }
    for field, document in bad.items():
        with pytest.raises(ApiError) as refused:
            stack.client.submit(document)
        assert refused.value.status == 422 and refused.value.detail[0]["field"] == field, refused.value.detail
        answer = cli(stack, tmp_path, folder, "validate", str(write_spec(tmp_path / "bad.yaml", document)))
        assert answer.returncode == 2 and field in answer.stderr, (field, answer.stderr)

    # a trainer that raises, stalls or reports NaN fails its trial with the reason; the worker lives on
    for trainer, reason in (("raises", "boom from the trainer"), ("stalls", "stopped reporting"),
                            ("nonfinite", "train_loss=nan")):
        trials = one_trial_job(stack, trainer)
        assert [t["state"] for t in trials] == ["failed"], (trainer, trials, stack.logs())
        assert reason in (trials[0]["error"] or ""), (trainer, trials[0])
    assert not stack.supervisor.dead()
