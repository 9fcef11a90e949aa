"""Three coordinators on three control hosts share the jobs; one is killed and one cut off (its
host's link down): the survivor adopts their jobs (the time it took is measured), the cut-off
one rejoins after it healed (its writes with the old token would be refused:
tests/services/test_ownership.py shows that deterministically), and every job ends with each
configuration asked once and one result each (table == Optuna's record == API)."""

from __future__ import annotations

import time

import sqlalchemy as sa

from regsearch.store.db import Database
from tests.cluster.hosts import LEASE_S, Cluster
from tests.cluster.invariants import check_one_result_each, small_spec
from tests.cluster.measure import record


def _owners(db: Database) -> dict[str, tuple[str, int]]:
    with db.read() as session:
        rows = session.execute(sa.text("SELECT job_id, owner, token FROM regsearch_job_owners")).all()
    return {row.job_id: (row.owner.split(":")[0], row.token) for row in rows}


def test_a_killed_and_a_cut_off_coordinator_are_replaced(make_cluster) -> None:
    cluster: Cluster = make_cluster(coordinator_hosts=3)
    cluster.start_services()
    client = cluster.client()
    db = Database(cluster.database_url)
    try:
        spec = small_spec("failover", budget={"n_trials": 5, "parallelism": 1}, training={"epochs": 4})
        jobs = [client.submit({**spec, "name": f"failover-{i}"})["id"] for i in range(3)]
        # Spread: each coordinator holds one job.
        cluster.wait_for(lambda: sorted(host for host, _ in _owners(db).values()) == ["ctl", "ctl2", "ctl3"],
                         30, "one job on each coordinator")
        before = _owners(db)
        cluster.kill("coordinator2")
        cluster.net.link("ctl3", up=False)
        cut_at = time.monotonic()
        cluster.wait_for(lambda: {host for host, _ in _owners(db).values()} == {"ctl"}, 20 * LEASE_S,
                         "the survivor to adopt every job")
        adoption_s = time.monotonic() - cut_at
        record("coordinator_adoption_s", {"seconds": round(adoption_s, 2), "lease_s": LEASE_S,
                                          "lease_periods": round(adoption_s / LEASE_S, 2)})
        after = _owners(db)
        for job_id, (host, token) in before.items():
            if host != "ctl":
                assert after[job_id][1] == token + 1  # one change of owner, one new fencing token
        time.sleep(LEASE_S)
        cluster.net.link("ctl3", up=True)  # back from the far side of the cut
        trained_on: set[str] = set()
        for job_id in jobs:
            done = cluster.wait_for(lambda j=job_id: client.job(j)["status"] in ("completed", "failed"), 240,
                                    f"job {job_id} to finish")
            assert done
            assert client.job(job_id)["status"] == "completed", cluster.logs()
            trained_on |= check_one_result_each(cluster, client, job_id)
            with db.read() as session:  # never two owners asking: each search ask is one trial
                asked = session.scalar(sa.text(
                    "SELECT count(*) FROM regsearch_trials WHERE job_id = :j AND retry_of IS NULL "
                    "AND confirm_of IS NULL"), {"j": job_id})
            assert asked == 5
        assert trained_on == {"w1", "w2"}  # both worker hosts, each by its own name
    finally:
        db.dispose()
        client.close()
