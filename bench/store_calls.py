"""A worker's two transactions per trial, timed in one process: the claim and the result.

    .venv/bin/python -m bench.store_calls [--trials 500] [--backend auto|production|embedded]

Each trial is claimed, then finished with four epochs, its reported values (a third complete)
and Optuna's outcome, as the worker does; prints the median milliseconds of each call. The
service benchmarks carry these calls among much else; this isolates them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def measure(trials: int, backend: str, data_dir: Path) -> dict[str, float]:
    from bench.service import fresh_database
    from regsearch.config import Settings
    from regsearch.domain.metrics import EpochMetrics
    from regsearch.domain.spec import validate_spec
    from regsearch.domain.states import TrialState, optuna_state
    from regsearch.store import jobs as job_store
    from regsearch.store import trials as trial_store
    from regsearch.store.db import Database
    from regsearch.store.migrate import upgrade
    from regsearch.store.studies import optuna_storage

    with fresh_database(backend, data_dir) as (database_url, _broker):
        url = Settings(data_dir=data_dir, database_url=database_url).sqlalchemy_url
        upgrade(url)
        db = Database(url, pre_ping=False)  # as the worker opens it
        spec = validate_spec({"name": "store-calls", "dataset": {"name": "digits"}, "pruner": "median",
                              "budget": {"n_trials": trials, "parallelism": 2}})
        job = job_store.create_job(db, spec=spec).job
        storage = optuna_storage(url)
        study_id = storage.get_study_id_from_name(job.study_name)
        epochs = [EpochMetrics(epoch=e, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.5, seconds=0.01)
                  for e in range(1, 5)]
        claim_s, finish_s = [], []
        for number in range(trials):
            optuna_id = storage.create_new_trial(study_id)
            row = trial_store.add_trial(db, job_id=job.id, number=number, optuna_trial_id=optuna_id,
                                        params={"placement": "bn-act-drop", "dropout": 0.2})
            started = time.perf_counter()
            claim = trial_store.claim(db, trial_id=row, worker="bench", device="cpu")
            claim_s.append(time.perf_counter() - started)
            assert isinstance(claim, trial_store.Claim)
            complete = number % 3 == 0
            state = TrialState.COMPLETE if complete else TrialState.PRUNED
            started = time.perf_counter()
            trial_store.finish(
                db, trial_id=row, lease=claim.lease, state=state,
                metrics={"val_acc": 0.5, "test_acc": 0.4}, epochs=epochs,
                step_values={e.epoch: e.val_acc for e in epochs} if complete else None, recipe={"layers": []},
                record=trial_store.OptunaOutcome(optuna_id, optuna_state(state),
                                                 [0.5] if complete else None))
            finish_s.append(time.perf_counter() - started)
        db.dispose()
        storage.engine.dispose()
    warm = max(1, trials // 10)  # connections and statement caches warm up first
    return {"claim_ms": 1000 * statistics.median(claim_s[warm:]), "finish_ms": 1000 * statistics.median(finish_s[warm:])}


def main() -> None:
    from bench.service import pick_backend

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--backend", choices=["auto", "production", "embedded"], default="auto")
    args = parser.parse_args()
    backend, why = pick_backend(args.backend)
    print(f"backend: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.trials, backend, Path(tmp))
    print(f"store calls: claim_ms={result['claim_ms']:.2f} finish_ms={result['finish_ms']:.2f}")


if __name__ == "__main__":
    main()
