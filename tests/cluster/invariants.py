"""What every cluster test checks at the end: nothing lost, nothing twice, every record agrees."""

from __future__ import annotations

import json
from typing import Any

from regsearch.store.db import Database
from tests.cluster.hosts import Cluster
from tests.services.books import assert_books_agree
from tests.services.stack import small_spec

__all__ = ["check_one_result_each", "small_spec"]


def check_one_result_each(cluster: Cluster, client: Any, job_id: str) -> set[str]:
    """The API, the trial table and Optuna's record agree (tests/services/books.py), and every
    configuration ends with exactly one result: one row not superseded by a retry. Returns the
    hosts whose workers trained the job's trials."""
    db = Database(cluster.database_url)
    try:
        rows = assert_books_agree(db, client, job_id)
    finally:
        db.dispose()
    current = [row for row in rows if not row.retried]
    configurations = [json.dumps(row.params, sort_keys=True) for row in current
                      if row.retry_of is None and row.confirm_of is None]
    assert len(configurations) == len(set(configurations)), "a configuration has two results"
    retried = {row.retry_of for row in current if row.retry_of is not None}  # numbers
    assert all(any(r.number == number and r.retried for r in rows) for number in retried)
    return {row.worker.split(":")[0] for row in rows if row.worker}
