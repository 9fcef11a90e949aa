"""A worker process keeps one pruner per job: a new trial's first check does not re-read the job."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from regsearch.domain.spec import validate_spec
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database
from regsearch.store.pruning import NoPruning, SqlMedianPruner
from regsearch.worker.trial_inputs import job_pruner


def test_one_warm_pruner_per_job_and_a_new_trial_reads_only_newer_completions(sqlite_db: Database) -> None:
    spec = validate_spec({"name": "p", "dataset": {"name": "digits"}, "training": {"epochs": 4}, "pruner": "median"})
    job = job_store.create_job(sqlite_db, spec=spec).job
    for number in range(6):  # six complete trials, values at steps 1-4
        trial_id = trial_store.add_trial(sqlite_db, job_id=job.id, number=number, optuna_trial_id=number + 1,
                                         params={"placement": "act"})
        claim = trial_store.claim(sqlite_db, trial_id=trial_id, worker="w", device="cpu")
        assert isinstance(claim, trial_store.Claim)
        trial_store.finish(sqlite_db, trial_id=trial_id, lease=claim.lease, state="complete",
                           metrics={"val_acc": 0.5}, step_values={s: 0.1 * s + number / 100 for s in range(1, 5)})

    first = job_pruner(sqlite_db.url, job.id, job.study_name, spec.model_dump_json())
    assert isinstance(first, SqlMedianPruner)
    assert first.should_prune(6, {1: 0.0, 2: 0.0}) is True, "far below the median"
    assert first._cache.seen_seq == 6

    second = job_pruner(sqlite_db.url, job.id, job.study_name, spec.model_dump_json())
    assert second is first, "the next trial of the job reuses the warm pruner"
    statements: list[tuple[str, object]] = []
    def record(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)  # the reader and the writer engine alike
    try:
        assert second.should_prune(7, {1: 0.9, 2: 0.9}) is False
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    queries = [(q, p) for q, p in statements if q.startswith("SELECT")]
    assert len(queries) == 1 and "completion_seq >" in queries[0][0]
    assert queries[0][1] == (job.id, 6), "it asks only for completions after the six it has seen"

    unpruned = validate_spec({**spec.model_dump(mode="json"), "pruner": "none"})
    assert isinstance(job_pruner(sqlite_db.url, job.id, job.study_name, unpruned.model_dump_json()), NoPruning)
