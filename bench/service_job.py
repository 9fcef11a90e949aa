"""Wall time and per-trial service overhead of a real search job through the full service.

    .venv/bin/python bench/service_job.py                    # 40-trial mnist1d job, 2 workers, embedded
    .venv/bin/python bench/service_job.py --backend production  # PostgreSQL + Redis on 127.0.0.1

overhead per trial = (workers x wall time - sum of the trials' training time) / trials, where a
trial's training time is the sum of its epochs' seconds (train + per-epoch evaluation). It counts
everything that is not training: queueing, claiming, loading, per-epoch writes, reporting, telling,
and idle workers at the end of the job.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from regsearch.client import Client
from regsearch.config import Settings
from regsearch.launcher import Supervisor, plan
from regsearch.store import jobs as job_store
from regsearch.store.db import Database
from regsearch.store.migrate import upgrade

SPEC: dict[str, Any] = {
    "name": "bench-mnist1d-40",
    "dataset": {"name": "mnist1d"},
    "model": {"family": "mlp", "hidden": [256, 256, 256]},
    "space": {"placement": ["bn-act-drop", "act-bn-drop", "drop-bn-act", "bn-act", "act-drop", "act"],
              "dropout": {"low": 0.0, "high": 0.6}, "bn_momentum": {"low": 0.01, "high": 0.5, "log": True},
              "dropout_layers": ["all", "last"], "bn_layers": ["all"]},
    "training": {"epochs": 30, "batch_size": 128, "lr": 0.001, "optimizer": "adam", "seed": 0},
    "objective": {"metrics": ["val_acc"], "directions": ["maximize"]},
    "budget": {"n_trials": 40, "parallelism": 2},
    "sampler": "tpe",
    "pruner": "median",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def production_urls() -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"regsearch_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "redis://127.0.0.1:6379/15"


def run(spec: dict[str, Any], workers: int, backend: str, data_dir: Path) -> dict[str, Any]:
    database_url, broker_url = production_urls() if backend == "production" else (None, None)
    if broker_url:
        import redis

        redis.Redis.from_url(broker_url).flushdb()
    port = _free_port()
    settings = Settings(data_dir=data_dir, database_url=database_url, broker_url=broker_url, api_url=f"http://127.0.0.1:{port}",
                        coordinator_poll_s=0.2)
    upgrade(settings.sqlalchemy_url)
    supervisor = Supervisor(settings, plan(settings, workers=workers, api_port=port, dashboard_port=None), str(data_dir / "logs"))
    supervisor.start()
    try:
        with Client(settings) as client:
            while not client.ready():
                time.sleep(0.2)
            # Warm the dataset cache so generation time is not billed to the service.
            from worker.datasets import load_dataset
            from regsearch.spec import validate_spec

            load_dataset(validate_spec(spec).dataset, data_dir)
            started = time.monotonic()
            job = client.submit(spec)
            while client.job(job["id"])["status"] not in ("completed", "failed", "cancelled"):
                time.sleep(0.2)
            wall = time.monotonic() - started
            items = client.all_trials(job["id"])
        db = Database(settings.sqlalchemy_url)
        training = 0.0
        for item in items:
            found = job_store.get_trial(db, job_id=job["id"], number=item["number"])
            training += sum(e.seconds or 0.0 for e in found[1]) if found else 0.0
        db.dispose()
    finally:
        supervisor.stop()
    trials = len(items)
    return {
        "backend": backend, "workers": workers, "trials": trials, "wall_s": round(wall, 2),
        "training_s": round(training, 2), "overhead_ms_per_trial": round(1000 * (workers * wall - training) / trials, 1),
        "states": {s: sum(1 for i in items if i["state"] == s) for s in ("complete", "pruned", "failed")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    spec = json.loads(json.dumps(SPEC))
    spec["budget"]["n_trials"] = args.trials
    spec["training"]["epochs"] = args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(spec, args.workers, args.backend, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
