"""At submit, what the API can already tell about a job's data is a 422, not a failed job.

- Embedded (no ``REGSEARCH_BROKER_URL``), the API, the coordinator and the workers run on one
  machine with one data directory, so the API sees the files the workers will read: a missing
  file, or one of another kind (an ``.npz`` named by a ``csv`` spec), is refused. In production
  the workers' data directories are their own: the first worker that cannot read the data ends
  the job with the reason (``regsearch.store.job_data``).
- The sample shape a worker published for an earlier job on the same data
  (``regsearch.store.job_data.published_shape``) rules out a model that cannot take it (a VGG
  whose pools do not fit the image) and a crop padding of half the image side or more
  (``regsearch.domain.data_checks.shape_problem``). A file replaced since that job was created
  is not judged by the old shape.
"""

from __future__ import annotations

from regsearch.config import Settings
from regsearch.domain.data import FILE_DATASETS, DatasetError, resolve_data_path
from regsearch.domain.data_checks import check_data_format, shape_problem
from regsearch.domain.spec import JobSpec, SpecError
from regsearch.store.db import Database
from regsearch.store.job_data import published_shape


def check_dataset_files(spec: JobSpec, settings: Settings) -> None:
    """Raise SpecError naming ``dataset.path`` when the embedded data directory lacks the file,
    or holds one of another kind."""
    dataset = spec.dataset
    if settings.broker_url is not None or dataset.name not in FILE_DATASETS or not dataset.path:
        return
    try:
        path = resolve_data_path(settings.data_dir, dataset.path, folder=dataset.name == "images")
        check_data_format(path, dataset.name, dataset.path)
    except DatasetError as exc:
        raise SpecError("dataset.path", str(exc).removeprefix("dataset.path: ")) from None


def check_published_shape(spec: JobSpec, settings: Settings, db: Database) -> None:
    """Raise SpecError naming the field when the data's published sample shape rules ``spec`` out."""
    dataset = spec.dataset
    known = published_shape(db, dataset=dataset.model_dump(mode="json", exclude_none=True))
    if known is None:
        return
    if dataset.name in FILE_DATASETS:
        # A file may have been replaced since: judge it only where the API sees it unchanged.
        if settings.broker_url is not None or not dataset.path:
            return
        try:
            path = resolve_data_path(settings.data_dir, dataset.path, folder=dataset.name == "images")
        except DatasetError:
            return
        if path.stat().st_mtime >= known.created_at.timestamp():
            return
    problem = shape_problem(spec, known.sample_shape)
    if problem is not None:
        raise SpecError(problem.field, f"{problem.message} (examples shaped {known.sample_shape}, as a "
                                       f"worker loaded this dataset for job {known.job_id})")
