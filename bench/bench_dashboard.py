"""How long the dashboard's job page takes to render for a large job (AppTest, no browser).

Builds a temporary SQLite database with one job of 2,000 trials (85% complete, 10% pruned, 5%
failed; placements, dropout and bn_momentum spread as a search would) and about 60,000 epoch
rows, inserted with bulk SQL; the job's Optuna study gets the same trials (parameters, values,
intermediate values) so parameter importance runs on a real study. Then it renders the job page
with ``streamlit.testing.v1.AppTest``: once in a fresh process state (imports included), then with
the data caches cleared (cold cache) and with them filled (warm cache), and prints the figures.
Goal: the cold-cache render under 3 s.

    .venv/bin/python bench/bench_dashboard.py [--trials 2000] [--epochs 34] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

import numpy as np

from regsearch.config import Settings, get_settings
from regsearch.domain.spec import JobSpec
from regsearch.domain.states import JobState, TrialState, optuna_state

PLACEMENTS = ["bn-act-drop", "act-bn-drop", "bn-act", "act-drop", "act"]
QUALITY = {"bn-act-drop": 0.93, "act-bn-drop": 0.925, "bn-act": 0.91, "act-drop": 0.90, "act": 0.88}


def make_spec(n_trials: int, epochs: int) -> JobSpec:
    return JobSpec.model_validate({
        "name": f"bench-{n_trials}-trials", "dataset": {"name": "mnist1d"},
        "space": {"placement": PLACEMENTS, "dropout": {"low": 0.0, "high": 0.6},
                  "bn_momentum": {"low": 0.01, "high": 0.5, "log": True}},
        "training": {"epochs": epochs}, "budget": {"n_trials": n_trials, "parallelism": 8},
    })


def synthetic_trials(n_trials: int, epochs: int, seed: int = 0) -> list[dict[str, Any]]:
    """Plausible trials: parameters, a per-epoch curve and the summary ``regsearch.domain.metrics`` gives."""
    from regsearch.domain.metrics import EpochMetrics, summarize

    rng = np.random.default_rng(seed)
    out = []
    for number in range(n_trials):
        placement = PLACEMENTS[int(rng.integers(len(PLACEMENTS)))]
        params: dict[str, Any] = {"placement": placement}
        quality, overfit = QUALITY[placement], 0.08
        if "drop" in placement:
            params["dropout"] = float(rng.uniform(0.0, 0.6))
            params["dropout_layers"] = "all"
            quality -= 0.1 * (params["dropout"] - 0.25) ** 2
            overfit *= 1 - params["dropout"]
        if "bn" in placement:
            params["bn_momentum"] = float(math.exp(rng.uniform(math.log(0.01), math.log(0.5))))
            params["bn_layers"] = "all"
        roll = rng.random()
        state = TrialState.COMPLETE if roll < 0.85 else TrialState.PRUNED if roll < 0.95 else TrialState.FAILED
        run = epochs if state == TrialState.COMPLETE else max(2, epochs // 3) if state == TrialState.PRUNED else 5
        tau = 2 + 4 * rng.random()
        rows = []
        for e in range(1, run + 1):
            val = quality * (1 - math.exp(-e / tau)) + rng.normal(0, 0.004)
            train = min(1.0, val + overfit * e / epochs + rng.normal(0, 0.003))
            rows.append(EpochMetrics(e, 1 - train + 0.05, train, 1 - val + 0.1, val, 0.05 + 0.01 * rng.random()))
        metrics = summarize(rows, quality - 0.01 + rng.normal(0, 0.005)) if state != TrialState.FAILED else None
        out.append({"number": number, "state": state, "params": params, "epochs": rows, "metrics": metrics})
    return out


def add_optuna_trials(db: Any, study_id: int, trials: list[dict[str, Any]]) -> list[int]:
    """The trials in Optuna's own tables, by bulk insert (``study.add_trials`` takes minutes here).

    Rows as Optuna's RDB storage writes them: state, parameters in their internal
    representation, the objective value and one intermediate value per epoch.
    """
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        distribution_to_json,
    )
    from optuna.storages._rdb import models as m
    from sqlalchemy import func, insert, select

    dists = {"placement": CategoricalDistribution(PLACEMENTS), "dropout": FloatDistribution(0.0, 0.6),
             "bn_momentum": FloatDistribution(0.01, 0.5, log=True)}
    dist_json = {k: distribution_to_json(d) for k, d in dists.items()}
    finite_value = m.TrialValueModel.TrialValueType.FINITE
    finite_step = m.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # Optuna stores naive UTC
    with db.session() as session:
        first = (session.scalar(select(func.max(m.TrialModel.trial_id))) or 0) + 1
        ids = list(range(first, first + len(trials)))
        session.execute(insert(m.TrialModel.__table__), [
            {"trial_id": i, "number": t["number"], "study_id": study_id, "state": optuna_state(t["state"]),
             "datetime_start": now, "datetime_complete": now}
            for i, t in zip(ids, trials)
        ])
        session.execute(insert(m.TrialParamModel), [
            {"trial_id": i, "param_name": k, "param_value": dists[k].to_internal_repr(v), "distribution_json": dist_json[k]}
            for i, t in zip(ids, trials) for k, v in t["params"].items() if k in dists
        ])
        session.execute(insert(m.TrialValueModel), [
            {"trial_id": i, "objective": 0, "value": t["metrics"]["val_acc"], "value_type": finite_value}
            for i, t in zip(ids, trials) if t["state"] == TrialState.COMPLETE
        ])
        session.execute(insert(m.TrialIntermediateValueModel), [
            {"trial_id": i, "step": e.epoch, "intermediate_value": e.val_acc, "intermediate_value_type": finite_step}
            for i, t in zip(ids, trials) for e in t["epochs"]
        ])
    return ids


def fill(url: str, spec: JobSpec, trials: list[dict[str, Any]]) -> str:
    """One job with ``trials``: created as the API does (with its study), then rows by bulk insert."""
    import optuna
    from sqlalchemy import insert

    from regsearch.store import jobs as job_store
    from regsearch.store import studies
    from regsearch.store.db import Database
    from regsearch.store.models import Epoch, Trial, utcnow

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = Database(url)
    job = job_store.create_job(db, spec=spec).job
    job_store.set_job_status(db, job_id=job.id, status=JobState.RUNNING)
    study = optuna.load_study(study_name=job.study_name, storage=studies.optuna_storage(url))
    optuna_ids = add_optuna_trials(db, study._study_id, trials)
    now = utcnow()
    with db.session() as session:
        session.execute(insert(Trial), [
            {"job_id": job.id, "number": t["number"], "optuna_trial_id": oid, "state": t["state"],
             "params": t["params"], "metrics": t["metrics"], "recipe": {"version": 1, "blocks": []},
             "worker": "bench:1", "device": "cpu", "created_at": now, "started_at": now, "finished_at": now,
             "error": "RuntimeError: bench" if t["state"] == TrialState.FAILED else None}
            for t, oid in zip(trials, optuna_ids)
        ])
        ids = dict(session.execute(Trial.__table__.select().with_only_columns(Trial.number, Trial.id)
                                   .where(Trial.job_id == job.id)).all())
        session.execute(insert(Epoch), [
            {"trial_id": ids[t["number"]], **e.as_dict()} for t in trials for e in t["epochs"]
        ])
    db.dispose()
    return job.id


def render(job_id: str) -> float:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    app.query_params["job"] = job_id
    started = time.perf_counter()
    app.run()
    elapsed = time.perf_counter() - started
    if app.exception:
        raise SystemExit(f"the job page raised: {app.exception[0].value}")
    if [h.value for h in app.header][:2] != ["Generalization", "Convergence"]:
        raise SystemExit(f"the job page did not render its sections: {[h.value for h in app.header]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=34, help="epochs of a complete trial (34: ~60,000 rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the database in this folder (reused when it exists)")
    args = parser.parse_args()

    from regsearch.store.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="regsearch-bench-dashboard-") as tmp:
        folder = args.keep or Path(tmp)
        settings = Settings(data_dir=folder, database_url=None, broker_url=None, api_token=None)
        url = settings.sqlalchemy_url
        marker = folder / "bench-job-id"
        if marker.exists():
            job_id = marker.read_text().strip()
            print(f"reusing the job {job_id} in {folder}")
        else:
            upgrade(url)
            started = time.perf_counter()
            trials = synthetic_trials(args.trials, args.epochs)
            job_id = fill(url, make_spec(args.trials, args.epochs), trials)
            marker.write_text(job_id)
            n_epochs = sum(len(t["epochs"]) for t in trials)
            print(f"filled: {args.trials} trials, {n_epochs} epoch rows in {time.perf_counter() - started:.1f} s")

        os.environ["REGSEARCH_DATA_DIR"] = str(settings.data_dir)
        os.environ["REGSEARCH_DATABASE_URL"] = url
        get_settings.cache_clear()
        import streamlit as st

        first = render(job_id)  # imports, empty caches
        cold, warm = [], []
        for _ in range(args.repeats):
            st.cache_data.clear()
            cold.append(render(job_id))
            warm.append(render(job_id))
        print(f"job page, first render in this process (imports + empty caches): {first:.2f} s")
        print(f"job page, cold cache (median of {args.repeats}): {statistics.median(cold):.2f} s  "
              f"[{', '.join(f'{c:.2f}' for c in cold)}]")
        print(f"job page, warm cache (median of {args.repeats}): {statistics.median(warm):.2f} s  "
              f"[{', '.join(f'{w:.2f}' for w in warm)}]")
        verdict = "ok" if statistics.median(cold) < 3.0 else "SLOW"
        print(f"bench: dashboard_job_page_cold_s={statistics.median(cold):.2f} "
              f"dashboard_job_page_warm_s={statistics.median(warm):.2f} goal_s=3.0 {verdict}")


if __name__ == "__main__":
    main()
