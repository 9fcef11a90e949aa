"""Load on a real ``regsearch api`` process: N concurrent clients submit jobs and read them back.

    .venv/bin/python bench/load_api.py                       # 50 clients x 60 s on PostgreSQL
    .venv/bin/python bench/load_api.py --clients 50 --seconds 10 --backend sqlite
    .venv/bin/python bench/load_api.py --url http://127.0.0.1:8000 --token ...   # an API already up

Without ``--url`` it creates a fresh database (PostgreSQL: a new database on the server of
``REGSEARCH_TEST_PG_URL``, dropped afterwards; SQLite: a file in a temporary data directory),
seeds it with jobs, trials and epochs, and starts ``regsearch api`` on a free port. No
coordinator runs, so the submitted jobs stay queued: this measures the API and the store.

Each client (asyncio + httpx, one keep-alive connection each) loops until the time is up over a
weighted mix: POST /jobs (5%), GET /jobs (20%), /jobs/{id} (25%), /jobs/{id}/trials (25%),
/jobs/{id}/best (20%), /jobs/{id}/trials/{n} (5%). An error is an exception (connection, timeout)
or any status other than the route's success status. Prints a markdown table, and last a line:

    load: backend=postgresql clients=50 seconds=60 requests=... errors=... p95_ms=...
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx

PG_ADMIN_URL = os.environ.get("REGSEARCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

SPEC: dict[str, Any] = {
    "name": "load",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "hidden": [32, 32]},
    "space": {"placement": ["bn-act-drop", "act-drop", "bn-act", "act"], "dropout": {"low": 0.0, "high": 0.5}},
    "training": {"epochs": 10, "batch_size": 64, "lr": 0.003},
    "budget": {"n_trials": 20, "parallelism": 2},
    "sampler": "tpe",
    "pruner": "median",
}
# (weight, name): what a dashboard and a few scripts polling the API look like.
MIX = [(5, "POST /jobs"), (20, "GET /jobs"), (25, "GET /jobs/{id}"), (25, "GET /jobs/{id}/trials"),
       (20, "GET /jobs/{id}/best"), (5, "GET /jobs/{id}/trials/{n}")]


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the system under test ------------------------------------------------------------------
@contextlib.contextmanager
def database(backend: str, data_dir: Path) -> Iterator[str]:
    """A fresh, migrated database URL for ``backend`` (PostgreSQL: dropped afterwards)."""
    from regsearch.store.migrate import upgrade

    if backend == "sqlite":
        url = f"sqlite:///{data_dir / 'regsearch.db'}"
        upgrade(url)
        yield url
        return
    import sqlalchemy as sa

    name = f"regsearch_load_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        from regsearch.store.studies import optuna_storage

        optuna_storage.cache_clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str, jobs: int, trials: int, epochs: int) -> list[tuple[str, int]]:
    """``jobs`` jobs, each with ``trials`` finished trials of ``epochs`` epochs; returns (job, n trials)."""
    import optuna

    from regsearch.domain.metrics import EpochMetrics
    from regsearch.domain.spec import validate_spec
    from regsearch.domain.states import TrialState
    from regsearch.store import jobs as job_store
    from regsearch.store import trials as trial_store
    from regsearch.store.db import Database

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    db = Database(url)
    seeded = []
    try:
        spec = validate_spec(SPEC)
        for _ in range(jobs):
            job = job_store.create_job(db, spec=spec).job
            for number in range(trials):
                placement = rng.choice(SPEC["space"]["placement"])
                trial_id = trial_store.add_trial(db, job_id=job.id, number=number, optuna_trial_id=number,
                                                 params={"placement": placement})
                claim = trial_store.claim(db, trial_id=trial_id, worker="seed:1", device="cpu")
                assert isinstance(claim, trial_store.Claim)
                curve = [EpochMetrics(epoch=e, train_loss=1 / e, train_acc=0.5 + e / (3 * epochs),
                                      val_loss=1.1 / e, val_acc=0.45 + e / (3 * epochs) - rng.random() / 50,
                                      seconds=0.05) for e in range(1, epochs + 1)]
                trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=curve)
                best = max(c.val_acc for c in curve)
                metrics = {"val_acc": best, "test_acc": best - 0.01, "gap": 0.03, "epochs_to_95pct_best": epochs // 2,
                           "mean_val_acc": statistics.fmean(c.val_acc for c in curve), "seconds_per_epoch": 0.05,
                           "epochs_run": epochs}
                trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state=TrialState.COMPLETE, metrics=metrics)
            seeded.append((job.id, trials))
    finally:
        db.dispose()
    return seeded


API_PID: list[int] = []  # the API this run started, for its CPU figure


@contextlib.contextmanager
def api_process(url: str, data_dir: Path, token: str | None) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSEARCH_")}
    env.update(REGSEARCH_DATA_DIR=str(data_dir), REGSEARCH_DATABASE_URL=url)
    if token:
        env["REGSEARCH_API_TOKEN"] = token
    log = open(data_dir / "api.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "regsearch", "api", "--port", str(port)], env=env, cwd=str(ROOT),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited with {process.returncode}: "
                                   f"{(data_dir / 'api.log').read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not become ready within 60 s")
            time.sleep(0.2)
        API_PID.append(process.pid)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


# -- the load -------------------------------------------------------------------------------
@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0  # CPU the load generator itself used (it shares the machine)
    api_cpu_s: float | None = None  # CPU of the API process, when this run started it

    def record(self, op: str, seconds: float, problem: str | None) -> None:
        self.latencies[op].append(seconds)
        if problem is not None:
            self.errors[op] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{op}: {problem}")

    @property
    def all_latencies(self) -> list[float]:
        return sorted(x for values in self.latencies.values() for x in values)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


@dataclass
class Jobs:
    seeded: list[tuple[str, int]]  # (job id, number of trials)
    created: list[tuple[str, int]] = field(default_factory=list)


async def client_loop(base: str, token: str | None, jobs: Jobs, deadline: float, results: Results,
                      seed_value: int) -> None:
    rng = random.Random(seed_value)
    weights, ops = zip(*MIX)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as http:
        while time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            # Reads of trials go to jobs that have some; a job's page also to the freshly created.
            pool = jobs.seeded if "trials" in op or "best" in op or not jobs.created or rng.random() < 0.5 else jobs.created
            job_id, n_trials = rng.choice(pool)
            method, template = op.split(" ", 1)
            path = template.replace("{id}", job_id).replace("{n}", str(rng.randrange(max(1, n_trials))))
            expected = 201 if method == "POST" else 200
            kwargs: dict[str, Any] = {"json": SPEC} if method == "POST" else {}
            if op == "GET /jobs/{id}/trials":
                kwargs["params"] = {"limit": 50}
            started = time.perf_counter()
            problem = None
            try:
                response = await http.request(method, path, **kwargs)
                if response.status_code != expected:
                    problem = f"{response.status_code} {response.text[:200]}"
                elif method == "POST":
                    jobs.created.append((response.json()["id"], 0))
            except httpx.HTTPError as exc:
                problem = repr(exc)
            results.record(op, time.perf_counter() - started, problem)


async def run_load(base: str, token: str | None, jobs: Jobs, clients: int, seconds: float) -> tuple[Results, float]:
    results = Results()
    started, cpu = time.monotonic(), time.process_time()
    api_cpu = process_cpu_s(API_PID[-1]) if API_PID else None
    deadline = started + seconds
    await asyncio.gather(*(client_loop(base, token, jobs, deadline, results, i) for i in range(clients)))
    elapsed = time.monotonic() - started
    results.client_cpu_s = time.process_time() - cpu
    if api_cpu is not None:
        after = process_cpu_s(API_PID[-1])
        results.api_cpu_s = None if after is None else after - api_cpu
    return results, elapsed


def report(results: Results, backend: str, clients: int, seconds: float, elapsed: float) -> dict[str, Any]:
    lat = results.all_latencies
    total, errors = len(lat), sum(results.errors.values())
    summary = {
        "backend": backend, "clients": clients, "seconds": seconds, "requests": total, "errors": errors,
        "rps": total / elapsed if elapsed else 0.0,
        "p50_ms": percentile(lat, 50) * 1000, "p95_ms": percentile(lat, 95) * 1000, "p99_ms": percentile(lat, 99) * 1000,
        "per_route": {op: {"requests": len(v), "errors": results.errors[op], "p95_ms": percentile(sorted(v), 95) * 1000}
                      for op, v in sorted(results.latencies.items())},
        "error_examples": results.examples, "client_cpu_s": results.client_cpu_s, "api_cpu_s": results.api_cpu_s,
    }
    print("| backend | clients | seconds | requests | errors | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {backend} | {clients} | {seconds:g} | {total} | {errors} | {summary['rps']:.0f} | "
          f"{summary['p50_ms']:.1f} | {summary['p95_ms']:.1f} | {summary['p99_ms']:.1f} |")
    print()
    print("| route | requests | errors | p95 ms |")
    print("|---|---|---|---|")
    for op, row in summary["per_route"].items():
        print(f"| {op} | {row['requests']} | {row['errors']} | {row['p95_ms']:.1f} |")
    print(f"\nload generator CPU: {results.client_cpu_s:.1f} s over {elapsed:.1f} s "
          f"({results.client_cpu_s / elapsed:.0%} of one core); {os.cpu_count()} cores")
    if results.api_cpu_s is not None and total:
        print(f"API process CPU: {results.api_cpu_s:.1f} s ({results.api_cpu_s / elapsed:.0%} of one core), "
              f"{results.api_cpu_s * 1000 / total:.2f} ms per request")
    for example in results.examples:
        print(f"error: {example}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--url", help="an API that is already running (no database set-up, no seeding)")
    parser.add_argument("--token", default=os.environ.get("REGSEARCH_API_TOKEN"))
    parser.add_argument("--seed-jobs", type=int, default=10)
    parser.add_argument("--seed-trials", type=int, default=30)
    parser.add_argument("--seed-epochs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="regsearch-load-") as tmp:
        data_dir = Path(tmp)
        with contextlib.ExitStack() as stack:
            if args.url:
                base = args.url.rstrip("/")
                existing = httpx.get(f"{base}/jobs", headers={"Authorization": f"Bearer {args.token}"} if args.token else {},
                                     timeout=10).json()["items"]
                jobs = [(j["id"], sum(j["counts"].values())) for j in existing]
                if not jobs:
                    created = httpx.post(f"{base}/jobs", json=SPEC, timeout=10,
                                         headers={"Authorization": f"Bearer {args.token}"} if args.token else {})
                    jobs = [(created.json()["id"], 0)]
            else:
                url = stack.enter_context(database(args.backend, data_dir))
                jobs = seed(url, args.seed_jobs, args.seed_trials, args.seed_epochs)
                base = stack.enter_context(api_process(url, data_dir, args.token))
            results, elapsed = asyncio.run(run_load(base, args.token, Jobs(jobs), args.clients, args.seconds))
        summary = report(results, args.backend, args.clients, args.seconds, elapsed)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(f"load: backend={args.backend} clients={args.clients} seconds={args.seconds:g} requests={summary['requests']} "
          f"errors={summary['errors']} p95_ms={summary['p95_ms']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
