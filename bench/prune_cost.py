"""Cost of one pruning check per epoch in a study that already holds N finished trials.

Side by side: Optuna's ``MedianPruner`` (``trial.should_prune()`` on the RDB study, which reads
every trial) and regsearch's :class:`~regsearch.store.pruning.SqlMedianPruner` (one indexed query),
on the same database with the same N trials.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.bench_dashboard import add_optuna_trials, make_spec, synthetic_trials
from bench.service import fresh_database
from regsearch.domain.states import TrialState

STEPS = 20


def _fill(url: str, n_trials: int) -> tuple[str, str]:
    """A job whose study holds ``n_trials`` finished trials, in both schemas; (job id, study name)."""
    import optuna
    from sqlalchemy import insert, update

    from regsearch.store import jobs as job_store
    from regsearch.store import studies
    from regsearch.store.db import Database
    from regsearch.store.migrate import upgrade
    from regsearch.store.models import Job, StepValue, Trial, utcnow

    upgrade(url)
    db = Database(url)
    spec = make_spec(n_trials, STEPS)
    job = job_store.create_job(db, spec=spec).job
    study = optuna.load_study(study_name=job.study_name, storage=studies.optuna_storage(url))
    trials = synthetic_trials(n_trials, STEPS)
    optuna_ids = add_optuna_trials(db, study._study_id, trials)
    if not db.url.startswith("sqlite"):  # explicit ids bypassed the sequence: move it past them
        from sqlalchemy import text

        with db.session() as session:
            session.execute(text("SELECT setval(pg_get_serial_sequence('trials', 'trial_id'), "
                                 "(SELECT max(trial_id) FROM trials))"))
    now = utcnow()
    with db.session() as session:
        session.execute(insert(Trial), [
            {"job_id": job.id, "number": t["number"], "optuna_trial_id": oid, "state": t["state"], "params": t["params"],
             "metrics": t["metrics"], "created_at": now, "finished_at": now}
            for t, oid in zip(trials, optuna_ids)
        ])
        complete = [t for t in trials if t["state"] == TrialState.COMPLETE]
        session.execute(insert(StepValue), [
            {"job_id": job.id, "step": e.epoch, "trial_number": t["number"], "completion_seq": seq, "value": e.val_acc}
            for seq, t in enumerate(complete, start=1) for e in t["epochs"]
        ])
        session.execute(update(Job).where(Job.id == job.id).values(n_complete=len(complete)))
    if not db.url.startswith("sqlite"):  # as autovacuum would after a bulk load
        from sqlalchemy import text

        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    db.dispose()
    return job.id, job.study_name


def _time_checks(check: Any, repeats: int) -> float:
    """Median milliseconds per call of ``check(step)`` over ``repeats`` passes of all steps."""
    samples = []
    for _ in range(repeats):
        for step in range(1, STEPS + 1):
            started = time.perf_counter()
            check(step)
            samples.append(time.perf_counter() - started)
    return 1000 * statistics.median(samples)


def measure(n_trials: int, *, backend: str, data_dir: Path, repeats: int = 3, with_optuna: bool = True) -> dict[str, Any]:
    import optuna

    from regsearch.store.db import Database
    from regsearch.store.pruning import SqlMedianPruner
    from regsearch.store.studies import optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with fresh_database(backend, data_dir) as (database_url, _broker):
        url = database_url or f"sqlite:///{data_dir / f'prune-{n_trials}.db'}"
        job_id, study_name = _fill(url, n_trials)
        db = Database(url)
        ours = SqlMedianPruner(db, job_id, maximize=True, n_startup_trials=5, n_warmup_steps=0)
        history: dict[int, float] = {}

        def our_check(step: int) -> None:
            history[step] = 0.5 + step / 100
            ours.should_prune(n_trials + 1, {s: v for s, v in history.items() if s <= step})

        result = {"trials": n_trials, "regsearch_ms": _time_checks(our_check, repeats)}
        if with_optuna:
            study = optuna.load_study(study_name=study_name, storage=optuna_storage(url),
                                      pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0))
            trial = study.ask()

            def optuna_check(step: int) -> None:
                if step not in trial._cached_frozen_trial.intermediate_values:
                    trial.report(0.5 + step / 100, step)
                trial.should_prune()

            result["optuna_ms"] = _time_checks(optuna_check, 1)
        db.dispose()
        optuna_storage.cache_clear()
    return result
