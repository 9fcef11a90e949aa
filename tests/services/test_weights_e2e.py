"""Trained weights end to end with real processes: workers save them (a folder on the embedded
stack, S3 on moto's server with PostgreSQL and Redis), the job keeps its top ``keep_weights``
configurations', and the best trial's come back through the Client, ``load_model`` and
``regsearch best --save``, reproducing the stored test accuracy exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from regsearch import ApiError, Client, load_model
from regsearch.config import Settings
from regsearch.domain.spec import JobSpec
from regsearch.store import trials as trial_store
from regsearch.store.artifacts import open_artifact_store, weights_key
from regsearch.store.models import Trial
from regsearch.worker.datasets import load_dataset_cached
from regsearch.worker.train import to_device
from tests.services.stack import Stack, running_stack, small_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture(params=["embedded-folder", "production-s3"])
def weights_stack(request: pytest.FixtureRequest, data_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "embedded-folder":
        settings = Settings(data_dir=data_dir, database_url=None, broker_url=None, api_token=None)
    else:
        base = Settings(data_dir=data_dir, database_url=request.getfixturevalue("pg_url"),
                        broker_url=request.getfixturevalue("redis_url"), api_token=None)
        settings = request.getfixturevalue("s3_server").settings(base, request.getfixturevalue("s3_bucket"))
    with running_stack(settings, tmp_path / "logs") as stack:
        yield stack


def test_accuracy_of(model: torch.nn.Module, spec: JobSpec, data_dir: Path, input_shape: list[int]) -> float:
    """test_acc as the trainer measures it (correct / examples on the job's test split, on the CPU
    with one thread, as the stack's workers ran)."""
    data = to_device(load_dataset_cached(spec.dataset, data_dir), "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            correct = (model(data.x_test.reshape(-1, *input_shape)).argmax(dim=1) == data.y_test).sum().item()
    finally:
        torch.set_num_threads(threads)
    return correct / len(data.y_test)


test_accuracy_of.__test__ = False  # type: ignore[attr-defined]  # a helper


def cli(stack: Stack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSEARCH_")}
    return subprocess.run([sys.executable, "-m", "regsearch", "--api-url", stack.settings.api_url, *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False)


def test_the_best_trials_weights_come_back_and_reproduce_its_test_accuracy(weights_stack: Stack, tmp_path: Path) -> None:
    stack = weights_stack
    client = Client(stack.settings.api_url)  # the public construction (no token on loopback)
    spec = small_spec("weights", budget={"n_trials": 6, "parallelism": 2, "keep_weights": 2}, pruner="none")
    job = client.submit(spec)
    done = client.wait(job, poll_s=0.3, timeout_s=240)
    assert done["status"] == "completed" and done["counts"]["complete"] == 6, stack.logs()

    top = client.best(job, k=3)
    assert [item["weights"] for item in top] == ["kept", "kept", "evicted"], top
    folder = client.download(job, top[0]["number"], tmp_path / "best")
    model = load_model(folder)
    assert not model.training
    input_shape = top[0]["recipe"]["input_shape"]
    job_spec = JobSpec.model_validate(done["spec"])
    assert test_accuracy_of(model, job_spec, stack.settings.data_dir, input_shape) == top[0]["metrics"]["test_acc"]
    assert (folder / "weights.safetensors").read_bytes() == client.weights(job, top[0]["number"])

    # the books: two configurations keep weights, the store holds exactly their files
    def swept() -> list[Trial] | None:
        rows = trial_store.job_trials(stack.db, job_id=job["id"])
        return rows if all(r.weights in ("kept", "evicted") for r in rows) else None

    rows = stack.wait_for(swept, 30, "the evicted weights to be deleted")
    assert {r.number for r in rows if r.weights == "kept"} == {top[0]["number"], top[1]["number"]}
    store = open_artifact_store(stack.settings)
    assert all(store.exists(weights_key(job["id"], r.number)) == (r.weights == "kept") for r in rows)
    with pytest.raises(ApiError) as evicted:
        client.weights(job, top[2]["number"])
    assert evicted.value.status == 404 and "evicted" in evicted.value.message

    # regsearch best --save: recipe.json for every listed trial, weights where kept, exit 1 naming why
    saved = tmp_path / "saved"
    answer = cli(stack, tmp_path, "best", job["id"], "--top", "3", "--save", str(saved))
    assert answer.returncode == 1 and "evicted" in answer.stderr, answer.stderr
    for item in top:
        assert (saved / str(item["number"]) / "recipe.json").is_file()
    for item in top[:2]:
        assert (saved / str(item["number"]) / "weights.safetensors").read_bytes() == client.weights(job, item["number"])
    assert not (saved / str(top[2]["number"]) / "weights.safetensors").exists()
    answer = cli(stack, tmp_path, "best", job["id"], "--top", "2", "--save", str(tmp_path / "two"), "--json")
    assert answer.returncode == 0, answer.stderr
    second = load_model(tmp_path / "two" / str(top[1]["number"]))
    assert test_accuracy_of(second, job_spec, stack.settings.data_dir, input_shape) == top[1]["metrics"]["test_acc"]
    client.close()
