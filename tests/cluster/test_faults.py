"""Network faults on the cluster, with jobs running; after each, nothing lost or twice.

- a worker host cut off (link down) past the trial lease while it trains, then healed;
- the control host cut off from the database host (its packets arrive, no answer comes back);
- the broker unreachable from one worker host;
- latency and random connection resets on every path to the database and the broker.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from regsearch.store.db import Database
from tests.cluster.hosts import Cluster, retried
from tests.cluster.invariants import check_one_result_each, small_spec
from tests.cluster.measure import record

GRACE_S = 6.0  # the trial lease (REGSEARCH_HEARTBEAT_GRACE_S in tests/cluster/hosts.py)


def _rows(db: Database, job_id: str) -> list[sa.Row]:
    with db.read() as session:
        return list(session.execute(sa.text(
            "SELECT id, number, state, worker, retried, retry_of, error, superseded_result FROM regsearch_trials "
            "WHERE job_id = :j ORDER BY id"), {"j": job_id}).all())


def _finish(cluster: Cluster, client, job_id: str, timeout_s: float = 240) -> dict:
    cluster.wait_for(lambda: client.job(job_id)["status"] in ("completed", "failed", "cancelled"), timeout_s,
                     f"job {job_id} to finish")
    job = client.job(job_id)
    assert job["status"] == "completed", f"{job}\n{cluster.logs()}"
    return job


def test_worker_host_cut_off_past_its_lease(make_cluster) -> None:
    cluster: Cluster = make_cluster()
    cluster.start_services()
    client, db = cluster.client(), Database(cluster.database_url)
    try:
        spec = small_spec("cut-worker", budget={"n_trials": 4, "parallelism": 2}, training={"epochs": 30},
                          pruner="none")
        job_id = client.submit(spec)["id"]
        running = cluster.wait_for(
            lambda: [r for r in _rows(db, job_id) if r.state == "running" and (r.worker or "").startswith("w1:")],
            120, "a trial training on w1")
        cut = running[0]
        cluster.net.link("w1", up=False)
        # Past the lease: the coordinator fails the trial and its retry trains on w2.
        cluster.wait_for(lambda: any(r.retry_of == cut.number and r.state in ("running", "complete")
                                     for r in _rows(db, job_id)), 6 * GRACE_S, "the cut trial to re-run on w2")
        cluster.net.link("w1", up=True)
        # Healed, w1 reports its trial's end late: the lease refuses it (kept aside as superseded).
        cluster.wait_for(lambda: next(r for r in _rows(db, job_id) if r.id == cut.id).superseded_result, 120,
                         "w1's late result")
        assert "finished after its lease was lost" in cluster.log("worker-w1")
        _finish(cluster, client, job_id)
        rows = {r.id: r for r in _rows(db, job_id)}
        assert rows[cut.id].state == "failed" and rows[cut.id].retried  # the late result did not count
        retry = next(r for r in rows.values() if r.retry_of == cut.number)
        assert retry.state == "complete" and retry.worker.startswith("w2:")
        check_one_result_each(cluster, client, job_id)
    finally:
        db.dispose()
        client.close()


def test_control_host_cut_off_from_the_database_host(make_cluster) -> None:
    cluster: Cluster = make_cluster()
    cluster.start_services()
    client, db = cluster.client(timeout_s=60), Database(cluster.database_url)
    try:
        job_id = client.submit(small_spec("cut-control", budget={"n_trials": 6, "parallelism": 2}))["id"]
        cluster.wait_for(lambda: any(r.state == "complete" for r in _rows(db, job_id)), 120, "a first result")
        ctl = cluster.net.hosts["ctl"]
        cluster.net.drop_replies("db", to=ctl)  # the db host's answers to the control host are lost
        started = time.monotonic()
        statuses = []
        while time.monotonic() - started < 30:
            response = client._http.get(f"/jobs/{job_id}")  # the raw answer: status and reason
            statuses.append(response.status_code)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 503:
                assert response.json().get("detail"), response.text  # a reason, never a bare 500
            time.sleep(1)
        assert 503 in statuses, statuses
        record("control_host_cut_30s_api_answers", {str(code): statuses.count(code) for code in set(statuses)})
        cluster.net.drop_replies("db", to=ctl, on=False)
        _finish(cluster, client, job_id)  # the coordinator resumed: nothing lost or twice
        check_one_result_each(cluster, client, job_id)
    finally:
        db.dispose()
        client.close()


def test_broker_unreachable_from_a_worker_host(make_cluster) -> None:
    cluster: Cluster = make_cluster()
    cluster.start_services()
    client, db = cluster.client(), Database(cluster.database_url)
    try:
        job_id = client.submit(small_spec("cut-broker", budget={"n_trials": 6, "parallelism": 2}))["id"]
        cluster.wait_for(lambda: any((r.worker or "").startswith("w1:") and r.state == "complete"
                                     for r in _rows(db, job_id)), 120, "a first result from w1")
        w1 = cluster.net.hosts["w1"]
        cluster.net.drop_replies("db", to=w1, source=cluster.redis_address)
        time.sleep(30)
        claimed_before = {r.id for r in _rows(db, job_id) if (r.worker or "").startswith("w1:")}
        cluster.net.drop_replies("db", to=w1, source=cluster.redis_address, on=False)
        _finish(cluster, client, job_id)
        check_one_result_each(cluster, client, job_id)
        # A second job with w2 stopped: only w1, reconnected to the broker, can run it.
        cluster.kill("worker-w2")
        second = client.submit(small_spec("after-cut", budget={"n_trials": 2, "parallelism": 2}))["id"]
        try:
            cluster.wait_for(lambda: any((r.worker or "").startswith("w1:") and r.id not in claimed_before
                                         for r in _rows(db, second)), 120, "w1 to claim again after the cut")
        except AssertionError:
            raise AssertionError(f"w1 did not claim again; its log:\n{cluster.log('worker-w1')[-12000:]}") from None
        _finish(cluster, client, second)
        check_one_result_each(cluster, client, second)
    finally:
        db.dispose()
        client.close()


def test_latency_and_resets_on_the_paths_to_database_and_broker(make_cluster) -> None:
    cluster: Cluster = make_cluster()
    cluster.start_services()
    client, db = cluster.client(timeout_s=60), Database(cluster.database_url)
    try:
        for proxy in cluster.proxies.values():  # 50 ms more per round trip, 1 request in 100 reset
            proxy.set(latency_s=0.05, reset_rate=0.01)
        job_id = retried(lambda: client.submit(small_spec("lossy", budget={"n_trials": 3, "parallelism": 2}),
                                               idempotency_key="lossy"))["id"]
        cluster.wait_for(lambda: client.job(job_id)["status"] in ("completed", "failed", "cancelled"), 300,
                         "the job to finish under delay and resets")
        for proxy in cluster.proxies.values():
            proxy.set()  # the checks read through the API, which the faults would answer 503 now and then
        _finish(cluster, client, job_id)
        check_one_result_each(cluster, client, job_id)
        resets = {name: proxy.resets for name, proxy in cluster.proxies.items()}
        record("latency_50ms_reset_1pct_resets", resets)
        assert sum(resets.values()) > 0  # the fault did happen
    finally:
        for proxy in cluster.proxies.values():
            proxy.set()
        db.dispose()
        client.close()
