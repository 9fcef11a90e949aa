"""The dashboard's one write: deleting a job, through the store's one delete function.

Everything else the dashboard does is read-only (``regsearch.dashboard.data`` reads on an engine
that cannot write). The job page's "Delete job" button calls :func:`delete_job` here, which calls
``regsearch.store.deletion.delete_job`` (the same as ``DELETE /jobs/{id}`` and ``regsearch
delete``) on a store connection of its own, then drops the dashboard's cached reads.
"""

from __future__ import annotations

from regsearch.config import Settings

__all__ = ["NOTICE_KEY", "delete_job"]

NOTICE_KEY = "deleted_job"  # session state: what the jobs page says once, after a deletion


def delete_job(settings: Settings, job_id: str) -> str | None:
    """Delete job ``job_id`` (rows, Optuna study, kept weights); None when done, else why not
    (a queued or running job: cancel it first; gone already; the database or artifact store
    unreachable: nothing of the job's rows was deleted, asking again is safe)."""
    from regsearch.dashboard import data
    from regsearch.store import deletion
    from regsearch.store.artifacts import ArtifactStoreUnavailable, open_artifact_store
    from regsearch.store.db import Database, StoreUnavailable

    db = Database(settings.sqlalchemy_url)
    try:
        deletion.delete_job(db, open_artifact_store(settings), job_id)
    except (deletion.JobActive, deletion.JobNotFound) as exc:
        return f"Not deleted: {exc}."
    except (StoreUnavailable, ArtifactStoreUnavailable) as exc:
        return f"Not deleted (nothing was lost; try again): {exc}"
    finally:
        db.dispose()
        data.clear_caches()
    return None
