"""At submit, in the embedded mode, a dataset file that is not there is a 422, not a failed job.

Embedded (no ``REGSEARCH_BROKER_URL``), the API, the coordinator and the workers run on one
machine with one data directory, so the API sees the files the workers will read. In production
the workers' data directories are their own: the first worker that cannot read the data ends
the job with the reason (``regsearch.store.job_data``).
"""

from __future__ import annotations

from regsearch.config import Settings
from regsearch.domain.data import FILE_DATASETS, DatasetError, resolve_data_path
from regsearch.domain.spec import JobSpec, SpecError


def check_dataset_files(spec: JobSpec, settings: Settings) -> None:
    """Raise SpecError naming ``dataset.path`` when the embedded data directory lacks the file."""
    dataset = spec.dataset
    if settings.broker_url is not None or dataset.name not in FILE_DATASETS or not dataset.path:
        return
    try:
        resolve_data_path(settings.data_dir, dataset.path, folder=dataset.name == "images")
    except DatasetError as exc:
        raise SpecError("dataset.path", str(exc).removeprefix("dataset.path: ")) from None
