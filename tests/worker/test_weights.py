"""The trained weights' file: safetensors written by the worker, ``load_model`` reading them back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from regsearch.domain.spec import JobSpec
from regsearch.worker.datasets import load_dataset_cached
from regsearch.worker.local import run_local_trial
from regsearch.worker.train import to_device
from regsearch.worker.weights import RECIPE_FILE, WEIGHTS_FILE, load_model, to_safetensors

SPEC = JobSpec(name="weights", dataset={"name": "digits"}, model={"family": "mlp", "hidden": [32, 16]},
               training={"epochs": 3, "batch_size": 64})
PARAMS = {"placement": "bn-act-drop", "dropout": 0.2, "bn_momentum": 0.1, "dropout_layers": "all"}


def accuracy_on_test_split(model: torch.nn.Module, data_dir: Path, recipe: dict) -> float:
    """What the trainer measures as test_acc: correct / examples on the job's test split."""
    splits = to_device(load_dataset_cached(SPEC.dataset, data_dir), "cpu")
    x = splits.x_test.reshape(-1, *recipe["input_shape"])
    with torch.inference_mode():
        correct = (model(x).argmax(dim=1) == splits.y_test).sum().item()
    return correct / len(splits.y_test)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, float]:
    """(data dir, a folder as Client.download writes it, the recipe, the trial's test_acc)."""
    data_dir, folder = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("best")
    trial = run_local_trial(SPEC, PARAMS, data_dir, device="cpu")
    assert trial.result.best_state is not None
    (folder / RECIPE_FILE).write_text(json.dumps(trial.recipe))
    metadata = {"regsearch_recipe": json.dumps(trial.recipe)}
    (folder / WEIGHTS_FILE).write_bytes(to_safetensors(trial.result.best_state, metadata))
    return data_dir, folder, trial.recipe, trial.result.summary["test_acc"]


def test_the_saved_weights_reproduce_the_trials_test_accuracy(trained: tuple[Path, Path, dict, float]) -> None:
    data_dir, folder, recipe, test_acc = trained
    model = load_model(folder)
    assert all(not m.training for m in model.modules())
    assert accuracy_on_test_split(model, data_dir, recipe) == test_acc


def test_a_bare_file_carries_its_recipe(trained: tuple[Path, Path, dict, float], tmp_path: Path) -> None:
    data_dir, folder, recipe, test_acc = trained
    alone = tmp_path / "trial-3.safetensors"
    alone.write_bytes((folder / WEIGHTS_FILE).read_bytes())
    assert accuracy_on_test_split(load_model(alone), data_dir, recipe) == test_acc


def test_a_pickle_is_never_loaded(trained: tuple[Path, Path, dict, float], tmp_path: Path) -> None:
    _, folder, _, _ = trained
    marker = tmp_path / "unpickled"
    (tmp_path / RECIPE_FILE).write_bytes((folder / RECIPE_FILE).read_bytes())
    # torch.save's format is a pickle; this one creates `marker` if anything ever unpickles it
    code = ("import sys, torch\n"
            "class Evil:\n    def __reduce__(self): return (open, (sys.argv[1], 'w'))\n"
            "torch.save({'weight': Evil()}, sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, str(marker), str(tmp_path / WEIGHTS_FILE)], check=True, timeout=120)
    with pytest.raises(Exception, match="(?i)header|safetensor|deserializ"):
        load_model(tmp_path)
    assert not marker.exists()


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_model(tmp_path)


def test_import_regsearch_stays_torch_free() -> None:
    code = "import sys, regsearch; regsearch.load_model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_a_trial_the_top_would_evict_at_once_is_never_written(sqlite_settings, sqlite_db) -> None:
    """The worker's path (save_trial_weights, finish with retention, after_result): once the job
    keeps ``keep_weights`` configurations, a worse trial's file is never written (``evicted``),
    a better one's is (``kept``, and the worst kept one goes), and the books hold throughout."""
    from regsearch.domain.states import TrialState, WeightsState
    from regsearch.store import jobs as job_store
    from regsearch.store import trials as trial_store
    from regsearch.store.artifacts import weights_key
    from regsearch.store.weights import kept_configurations
    from regsearch.worker import weights as trial_weights

    spec = SPEC.model_copy(update={"budget": SPEC.budget.model_copy(update={"keep_weights": 2, "parallelism": 9})})
    job_id = job_store.create_job(sqlite_db, spec=spec).job.id
    store = trial_weights.artifact_store(sqlite_settings)
    state = {"w": torch.ones(3)}
    outcome = {}
    for number, val_acc in enumerate([0.5, 0.6, 0.4, 0.55, 0.9, 0.3]):
        trial_id = trial_store.add_trial(sqlite_db, job_id=job_id, number=number, optuna_trial_id=number,
                                         params=dict(PARAMS))
        claim = trial_store.claim(sqlite_db, trial_id=trial_id, worker="w", device="cpu")
        assert isinstance(claim, trial_store.Claim)
        metrics = {"val_acc": val_acc, "test_acc": val_acc}
        weights = trial_weights.save_trial_weights(sqlite_db, sqlite_settings, claim, spec, state, {}, metrics)
        outcome[number] = weights
        # the file exists exactly when the weights were kept
        assert store.exists(weights_key(job_id, number)) == (weights == WeightsState.KEPT)
        owned = trial_store.finish(sqlite_db, trial_id=trial_id, lease=claim.lease, state=TrialState.COMPLETE,
                                   metrics=metrics, weights=weights, retention=trial_weights.retention(spec))
        trial_weights.after_result(sqlite_db, sqlite_settings, claim, weights, owned)
        assert len(kept_configurations(sqlite_db, job_id=job_id)) <= 2
    assert outcome == {0: WeightsState.KEPT, 1: WeightsState.KEPT, 2: WeightsState.EVICTED,
                       3: WeightsState.KEPT, 4: WeightsState.KEPT, 5: WeightsState.EVICTED}
    assert kept_configurations(sqlite_db, job_id=job_id) == {1, 4}
    for number in range(6):
        assert store.exists(weights_key(job_id, number)) == (number in {1, 4})
