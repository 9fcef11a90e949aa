"""What a claimed trial trains with on this worker, a lone trial and a pack's member alike: the
worker's database and name, the spec it runs (:func:`run_spec`), its job's pruner kept warm
(:func:`job_pruner`) and the dataset's tensors on the device (:func:`device_data`, the job's data
summary written once: :func:`record_data`).

``regsearch.worker.runner`` and ``regsearch.worker.pack_runner`` both read these; neither imports
the other's helpers, so the imports run one way (runner -> pack_runner -> this module).
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any

from regsearch.domain.space import training_for
from regsearch.domain.spec import JobSpec
from regsearch.store import job_data
from regsearch.store.db import Database
from regsearch.store.pruning import Pruner, make_pruner
from regsearch.store.retry import with_retry
from regsearch.store.trials import Claim


@functools.lru_cache(maxsize=4)
def worker_database(url: str) -> Database:
    """One engine per worker process (created after the fork, never inherited).

    No checkout ping: every store call of the worker goes through ``with_retry``, which
    reconnects after a database restart, and a trial makes several transactions."""
    return Database(url, pre_ping=False)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_DEVICE_DATA: dict[tuple[int, str], Any] = {}
_DATA_RECORDED: set[str] = set()  # jobs whose data this process has written on the job row


def device_data(splits: Any, device: Any) -> Any:
    """The dataset's tensors on ``device``, moved once per worker process and kept there."""
    from regsearch.worker.train import to_device

    key = (id(splits), str(device))  # load_dataset_cached returns the same object per spec
    held = _DEVICE_DATA.get(key)
    if held is None or held[0] is not splits:
        _DEVICE_DATA.clear()  # one dataset at a time on the device is plenty
        held = _DEVICE_DATA[key] = (splits, to_device(splits, device))
    return held[1]


def record_data(db: Database, job_id: str, splits: Any) -> None:
    """Write the job's data summary on its row, once per job and process."""
    if job_id not in _DATA_RECORDED:
        with_retry(lambda: job_data.record_data(db, job_id=job_id, data=splits.summary()),
                   what=f"recording job {job_id}'s data")
        _DATA_RECORDED.add(job_id)


@functools.lru_cache(maxsize=8)
def job_pruner(url: str, job_id: str, study_name: str, spec_json: str) -> Pruner:
    """The job's pruner, kept warm across the trials this process runs.

    The median pruner's cache only ever grows by newer completions, so one built for an earlier
    trial of the job stays right; a new one per trial would re-read every completion of the job
    on its first check (100,000 rows at 5,000 trials of 20 epochs).
    """
    return make_pruner(worker_database(url), JobSpec.model_validate_json(spec_json), job_id, study_name)


def run_spec(claim: Claim) -> JobSpec:
    """The spec this run trains with: a confirmation run keeps the search's configuration and data
    split but trains with its own seed, to its last epoch (never pruned: its spread is the point)."""
    spec = training_for(JobSpec.model_validate(claim.spec), claim.params)  # a searched lr / weight_decay
    if claim.confirm_of is None:
        return spec
    training = spec.training.model_copy(update={"seed": claim.seed if claim.seed is not None else spec.training.seed})
    return spec.model_copy(update={"training": training, "pruner": "none"})
