"""A job's trial rows as the coordinator last read them, refreshed by reading only what can change.

Final rows (complete, pruned, failed) are final: only the coordinator itself edits them later
(``retried``), and it names the row it edited (:meth:`JobRows.reread`). So a refresh reads the
rows added since the last read, the rows that were open (queued or running) and the rows named:
a bounded number, where reading every row of a 5,000-trial job on each tick would grow with the
job. A full read remains for the decisions that end a job.
"""

from __future__ import annotations

from regsearch.domain.states import FINAL_TRIAL_STATES
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.models import Trial


class JobRows:
    def __init__(self, db: Database, job_id: str) -> None:
        self._db = db
        self._job_id = job_id
        self._rows: dict[int, Trial] = {}
        self._reread: set[int] = set()  # final rows the coordinator changed since the last read
        self._loaded = False

    def reread(self, row_id: int) -> None:
        """A final row the coordinator changed: the next refresh reads it again."""
        self._reread.add(row_id)

    def refresh(self, *, full: bool = False) -> list[Trial]:
        """The job's rows by trial number, current as of this call."""
        if full or not self._loaded:
            self._rows = {row.id: row for row in trial_store.job_trials(self._db, job_id=self._job_id)}
            self._loaded = True
        else:
            open_ids = [row.id for row in self._rows.values() if row.state not in FINAL_TRIAL_STATES]
            after_id = max(self._rows, default=0)
            for row in trial_store.changed_trials(self._db, job_id=self._job_id, after_id=after_id,
                                                  open_ids=open_ids + sorted(self._reread)):
                self._rows[row.id] = row
        self._reread.clear()
        return sorted(self._rows.values(), key=lambda row: row.number)
