"""The control plane's throughput: trials per second end to end when trials cost nothing.

    .venv/bin/python -m bench.control_plane      # as root: hosts are network namespaces
    make bench-cluster

The hosts of tests/cluster/hosts.py (PostgreSQL and Redis on a db host, API and coordinators on
control hosts, two worker hosts) run jobs whose trials use a "null" trainer (a trainer plugin
that reports one epoch and returns at once), so what is measured is the service's own work per
trial: the coordinator's ask, commit and send, the broker, the worker's claim, heartbeat, epoch
and result writes, and the coordinator's tell. For 1, 4 and 16 concurrent jobs, with 1 and 2
coordinators: trials per second from the first submit to the last job's end, and the
coordinators' CPU seconds per trial (from /proc). Beside them, on the same PostgreSQL: plain
Optuna ``optimize`` with a trivial objective, one process (its trials per second). Last, the
4-job run again with 50 ms more per round trip and 1 request in 100 reset on every path to the
database and the broker (the fault proxy), over the same run on a clean network: the efficiency
under delay and loss.

Last line: ``control_plane: c1_j1=.. c1_j4=.. c1_j16=.. c2_j1=.. c2_j4=.. c2_j16=.. optuna=..
cpu_ms_per_trial_c1_j16=.. faulty_efficiency=..`` (trials/s unless named otherwise).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TRAINER = '''
def train(ctx):
    """Reports one epoch and returns: a trial that costs the worker nothing."""
    ctx.report(1, train_loss=1.0, val_loss=1.0, train_acc=0.5, val_acc=0.5 + 0.001 * (hash(str(ctx.params)) % 100))
'''


def null_trainer_path(root: Path) -> Path:
    """A folder that, on PYTHONPATH, makes the "null" trainer an installed plugin (its own
    dist-info with the ``regsearch.trainers`` entry point; nothing goes into the venv)."""
    (root / "null_trainer.py").write_text(TRAINER)
    info = root / "regsearch_null_trainer-0.0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: regsearch-null-trainer\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[regsearch.trainers]\nnull = null_trainer:train\n")
    return root


TRAINING = {"null": {"epochs": 1, "trainer": "null"},
            # The nearest to nothing the built-in loop does: one epoch of one batch of an 8-unit MLP.
            "builtin": {"epochs": 1, "batch_size": 4096}}


def spec(name: str, n_trials: int, trainer: str = "null") -> dict[str, Any]:
    return {"name": name, "dataset": {"name": "digits"}, "model": {"family": "mlp", "hidden": [8]},
            "space": {"placement": ["bn-act-drop", "act-drop", "bn-act", "act"], "dropout": {"low": 0.0, "high": 0.5}},
            "training": TRAINING[trainer], "budget": {"n_trials": n_trials, "parallelism": 2},
            "sampler": "random", "pruner": "none"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


TRAINER_USED = ["null"]


def run_jobs(cluster: Any, jobs: int, trials: int, coordinators: list[str]) -> dict[str, float]:
    """Submit ``jobs`` jobs of ``trials`` null trials at once; trials/s and coordinator CPU/trial."""
    # A 503 (the database unreachable a moment) is asked again, as a client does.
    from tests.cluster.hosts import retried

    client = cluster.client(timeout_s=60)
    per_job = max(1, trials // jobs)
    cpu0 = {name: cpu_seconds(cluster.processes[name].pid) for name in coordinators}
    started = time.monotonic()
    ids = [retried(lambda i=i: client.submit(spec(f"cp-{jobs}-{i}", per_job, TRAINER_USED[0]),
                                         idempotency_key=f"cp-{started}-{jobs}-{i}"))["id"] for i in range(jobs)]
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids):
        for job_id in ids:
            if job_id not in done:
                job = retried(lambda j=job_id: client.job(j))
                if job["status"] in ("completed", "failed", "cancelled"):
                    done[job_id] = job
        if cluster.dead():
            raise RuntimeError(f"{cluster.dead()} exited\n{cluster.logs()}")
        time.sleep(0.05)
    wall = time.monotonic() - started
    cpu = sum(cpu_seconds(cluster.processes[name].pid) - cpu0[name] for name in coordinators)
    ran = sum(sum(job["counts"].values()) for job in done.values())
    failed = [job["status"] for job in done.values() if job["status"] != "completed"]
    client.close()
    if failed:
        raise RuntimeError(f"jobs ended {failed}\n{cluster.logs()}")
    return {"trials": ran, "seconds": wall, "trials_per_s": ran / wall, "cpu_ms_per_trial": 1000 * cpu / ran}


def optuna_baseline(url: str, trials: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name=f"bench-optuna-{os.getpid()}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.monotonic()
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=trials)
    return trials / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=64, help="trials per configuration (spread over its jobs)")
    parser.add_argument("--trainer", choices=sorted(TRAINING), default="null",
                        help="null: the plugin that returns at once; builtin: one batch of the built-in loop")
    args = parser.parse_args()
    TRAINER_USED[0] = args.trainer
    print(f"control_plane: trainer {args.trainer}", flush=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.cluster import netns
    from tests.cluster.hosts import Cluster

    reason = netns.available()
    if reason is not None:
        print(f"control_plane: skipped: {reason}")
        return
    netns.sweep()
    plugin = null_trainer_path(Path(tempfile.mkdtemp(prefix=f"{netns.PREFIX}-{os.getpid()}-trainer-")))
    cluster = Cluster(coordinator_hosts=2, env={"PYTHONPATH": str(plugin)})
    results: dict[str, Any] = {}
    try:
        cluster.start_services(coordinators=1, concurrency=2)
        client = cluster.client()
        cluster.wait_for(lambda: "null" in {t.get("name") for t in client.trainers()}, 120,
                         "the workers to offer the null trainer")
        client.close()
        try:  # warm up: imports, pools, the workers' first claims
            run_jobs(cluster, 2, 8, ["coordinator1"])
        except RuntimeError as exc:
            if TRAINER_USED[0] != "null":
                raise
            print(f"control_plane: the null trainer's jobs failed ({str(exc).splitlines()[0]}); "
                  "measuring with --trainer builtin instead", flush=True)
            TRAINER_USED[0] = "builtin"
            run_jobs(cluster, 2, 8, ["coordinator1"])
        for count in (1, 2):
            if count == 2:
                cluster.regsearch("ctl2", "coordinator2", "coordinator")
                time.sleep(4)  # registered, sharing the jobs from the next submit on
            names = [f"coordinator{i}" for i in range(1, count + 1)]
            for jobs in (1, 4, 16):
                result = run_jobs(cluster, jobs, args.trials, names)
                results[f"c{count}_j{jobs}"] = result
                print(f"{count} coordinator(s), {jobs:2d} jobs: {result['trials']} trials in "
                      f"{result['seconds']:.1f}s = {result['trials_per_s']:.2f} trials/s, coordinators' CPU "
                      f"{result['cpu_ms_per_trial']:.1f} ms/trial", flush=True)
        optuna_url = cluster.settings().sqlalchemy_url
        results["optuna"] = optuna_baseline(optuna_url, args.trials * 2)
        print(f"plain Optuna optimize (one process, same PostgreSQL): {results['optuna']:.2f} trials/s", flush=True)
        cluster.kill("coordinator2")
        time.sleep(4)
        clean = run_jobs(cluster, 4, args.trials, ["coordinator1"])
        for proxy in cluster.proxies.values():
            proxy.set(latency_s=0.05, reset_rate=0.01)
        faulty = run_jobs(cluster, 4, args.trials, ["coordinator1"])
        for proxy in cluster.proxies.values():
            proxy.set()
        results["faulty_efficiency"] = faulty["trials_per_s"] / clean["trials_per_s"]
        resets = {name: proxy.resets for name, proxy in cluster.proxies.items()}
        print(f"4 jobs, 50 ms more per round trip + 1 request in 100 reset: {faulty['trials_per_s']:.2f} trials/s "
              f"against {clean['trials_per_s']:.2f} clean = {results['faulty_efficiency']:.2f} (resets {resets})",
              flush=True)
    finally:
        cluster.close()
        import shutil

        shutil.rmtree(plugin, ignore_errors=True)
    figures = " ".join(f"{key}={value['trials_per_s']:.2f}" for key, value in results.items() if isinstance(value, dict))
    print(f"control_plane: {figures} optuna={results['optuna']:.2f} "
          f"cpu_ms_per_trial_c1_j16={results['c1_j16']['cpu_ms_per_trial']:.1f} "
          f"cpu_ms_per_trial_c2_j16={results['c2_j16']['cpu_ms_per_trial']:.1f} "
          f"faulty_efficiency={results['faulty_efficiency']:.2f}")


if __name__ == "__main__":
    main()
