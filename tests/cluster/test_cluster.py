"""A job across hosts: API and coordinator on one host, workers on two others, PostgreSQL and
Redis on a fourth, each addressed by its host address."""

from __future__ import annotations

from tests.cluster.hosts import Cluster
from tests.cluster.invariants import check_one_result_each, small_spec


def test_job_runs_across_hosts(make_cluster) -> None:
    cluster: Cluster = make_cluster()
    cluster.start_services()
    client = cluster.client()
    try:
        job_id = client.submit(small_spec("hosts", budget={"n_trials": 4, "parallelism": 2}))["id"]
        job = cluster.wait_for(lambda: _finished(client, job_id), 180, "the job to finish")
        assert job["status"] == "completed", cluster.logs()
        workers = check_one_result_each(cluster, client, job_id)
        assert workers <= {"w1", "w2"} and workers, workers  # trained on the worker hosts, by name
    finally:
        client.close()


def _finished(client, job_id: str):
    job = client.job(job_id)
    return job if job["status"] in ("completed", "failed", "cancelled") else None
