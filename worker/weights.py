"""Trained weights on the torch side: a complete trial's saved as safetensors, and loaded back.

The worker saves the best validation epoch's weights (what ``test_acc`` was measured with) to
the artifact store (:mod:`regsearch.store.artifacts`) before it writes the result, then evicts
what fell out of the job's top ``budget.keep_weights`` (:mod:`regsearch.store.weights`).
:func:`load_model` (``from regsearch import load_model``) rebuilds the module from its recipe and
loads them. safetensors holds tensors and string metadata only: no pickle on either side.

Importing this module imports no torch (the Celery parent imports the runner); torch and
safetensors are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsearch.config import Settings
from regsearch.domain.ranking import objectives_of
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import WeightsState
from regsearch.store.artifacts import ArtifactStore, open_artifact_store, weights_key
from regsearch.store.db import Database
from regsearch.store.trials import Claim
from regsearch.store.weights import Retention, sweep, worth_saving

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger("regsearch.worker")

RECIPE_FILE = "recipe.json"
WEIGHTS_FILE = "weights.safetensors"
RECIPE_METADATA = "regsearch_recipe"  # the recipe rides in the file's metadata too


def to_safetensors(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """A state dict as safetensors bytes (tensors copied to the CPU, contiguous)."""
    from safetensors.torch import save

    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()}
    return save(tensors, metadata=dict(metadata or {}))


_STORES: dict[tuple[Any, ...], ArtifactStore] = {}


def artifact_store(settings: Settings) -> ArtifactStore:
    """The store ``settings`` name, one per process (its S3 client is reused across trials)."""
    secret = settings.s3_secret_access_key
    key = (settings.artifacts_url, settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id,
           None if secret is None else secret.get_secret_value())
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = open_artifact_store(settings)
    return store


def retention(spec: JobSpec) -> Retention:
    return Retention(keep=spec.budget.keep_weights, objectives=objectives_of(spec))


def save_trial_weights(db: Database, settings: Settings, claim: Claim, spec: JobSpec,
                       best_state: Mapping[str, Any] | None, recipe: dict[str, Any],
                       metrics: dict[str, Any]) -> WeightsState:
    """Put a complete trial's weights in the artifact store: ``kept``; ``evicted`` when the job's
    top ``keep_weights`` would evict them at once (never written, see
    :func:`regsearch.store.weights.worth_saving`); or ``not saved`` (no retention, or the store
    refused them: the result matters more than its weights)."""
    if spec.budget.keep_weights == 0 or best_state is None:
        return WeightsState.NOT_SAVED
    if claim.confirm_of is None:  # a confirmation run keeps its weights with its configuration's
        try:
            if not worth_saving(db, job_id=claim.job_id, number=claim.number, metrics=metrics,
                                retention=retention(spec)):
                return WeightsState.EVICTED
        except Exception as exc:  # noqa: BLE001 - unsure: write them, and let the result's ranking decide
            log.warning("trial %d: could not rank its weights before saving them (%s)", claim.trial_id, exc)
    metadata = {"regsearch_job": claim.job_id, "regsearch_trial": str(claim.number),
                RECIPE_METADATA: json.dumps(recipe, sort_keys=True)}
    try:
        artifact_store(settings).put(weights_key(claim.job_id, claim.number), to_safetensors(best_state, metadata))
    except Exception:
        log.exception("trial %d: the weights could not be saved", claim.trial_id)
        return WeightsState.NOT_SAVED
    return WeightsState.KEPT


def after_result(db: Database, settings: Settings, claim: Claim, weights: WeightsState | None, owned: bool) -> None:
    """Once the result is written: delete the file of a result that was refused (lease lost),
    else the files of the job's trials that fell out of its top ``keep_weights``."""
    if weights != WeightsState.KEPT:
        return
    store = artifact_store(settings)
    try:
        if not owned:
            store.delete(weights_key(claim.job_id, claim.number))
        else:
            sweep(db, store, job_id=claim.job_id)
    except Exception as exc:  # noqa: BLE001 - the job's next sweep deletes what is left
        log.warning("job %s: evicting weights failed (%s); the next result retries", claim.job_id, exc)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The trained module saved at ``path``, in eval mode, on ``device``.

    ``path``: a folder with ``recipe.json`` and ``weights.safetensors`` (``Client.download``,
    ``regsearch best --save``), or a ``.safetensors`` file of this service (its metadata carries
    the recipe). The module is rebuilt from the recipe by the worker's ``build_model`` (the
    installed model families), then the weights are loaded strictly.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from regsearch.worker.models import build_model

    path = Path(path).expanduser()
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise FileNotFoundError(f"no weights at {weights} (expected {WEIGHTS_FILE} beside {RECIPE_FILE})")
    recipe_file = weights.with_name(RECIPE_FILE)
    if recipe_file.is_file():
        recipe = json.loads(recipe_file.read_text())
    else:
        with safe_open(str(weights), framework="pt") as handle:
            stored = (handle.metadata() or {}).get(RECIPE_METADATA)
        if stored is None:
            raise FileNotFoundError(f"no {RECIPE_FILE} beside {weights}, and the file carries no recipe")
        recipe = json.loads(stored)
    model = build_model(recipe)
    model.load_state_dict(load_file(str(weights), device=str(device)), strict=True)
    return model.to(device).eval()
