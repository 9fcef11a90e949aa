""""Nothing lost": the API, the trial table and Optuna's storage tell the same story."""

from __future__ import annotations

from typing import Any

import optuna

from regsearch.domain.states import FINAL_TRIAL_STATES
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.studies import optuna_storage

OPTUNA_STATE = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL", "cancelled": "FAIL"}


def assert_books_agree(db: Database, client: Any, job_id: str) -> list[Any]:
    """Every trial ended in exactly one final state, and every record of it agrees."""
    job = client.job(job_id)
    rows = trial_store.job_trials(db, job_id=job_id)
    assert rows, "the job has no trials"
    assert all(r.state in FINAL_TRIAL_STATES for r in rows), [(r.number, r.state) for r in rows]
    assert len({r.number for r in rows}) == len(rows), "a trial number appears twice"

    study = optuna.load_study(study_name=f"regsearch-{job_id}", storage=optuna_storage(db.url))
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert set(frozen) == {r.number for r in rows}, "Optuna and the trial table hold different trials"
    for row in rows:
        assert frozen[row.number].state.name == OPTUNA_STATE[row.state], (row.number, row.state, frozen[row.number].state)
        if row.state == "complete":
            assert row.metrics and row.metrics.get("val_acc") is not None

    final = [r for r in rows if not r.retried]
    counts = job["counts"]
    assert len(final) == counts["complete"] + counts["pruned"] + counts["failed"] + counts["cancelled"]
    api_items = client.trials(job_id)["items"]
    assert {t["number"]: t["state"] for t in api_items} == {r.number: r.state for r in rows}
    return rows
