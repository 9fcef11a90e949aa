"""The cluster fixture: hosts as network namespaces (tests/cluster/hosts.py).

Where namespaces cannot be made (not root, no iproute2) the tests skip with the reason; under
CI=true that is a failure, since CI runs as root on a machine that can make them. Leftovers of a
killed run (namespaces, the root link, temp dirs, named after a process that is gone) are swept
before the first cluster is built; each cluster is torn down by a finalizer, pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import netns
from tests.cluster.hosts import Cluster
from tests.conftest import IN_CI

_swept = False


def require_namespaces() -> None:
    global _swept
    reason = netns.available()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"cluster tests cannot run: {reason}; CI must run them for real")
        pytest.skip(f"cluster tests need network namespaces: {reason}")
    if not _swept:
        netns.sweep()
        _swept = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One xdist worker runs them all, one after the other: each builds several hosts' services.
    for item in items:
        if "tests/cluster/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.xdist_group("cluster"))


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[type[Cluster]]:
    """``make_cluster(workers=2, coordinator_hosts=1)``: built now, torn down after the test."""
    require_namespaces()
    made: list[Cluster] = []

    def build(**kwargs: object) -> Cluster:
        cluster = Cluster(**kwargs)  # type: ignore[arg-type]
        made.append(cluster)
        return cluster

    yield build  # type: ignore[misc]
    for cluster in made:
        cluster.close()
