"""The local Redis Cluster (tests/redis_cluster.py), one per session, for the tests in this folder.

Without a Redis 7 redis-server these tests skip, saying why; with SEATMAP_REQUIRE_CLUSTER=1 (CI)
they fail instead, so a CI machine that lost its redis-server cannot pass them silently.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_cluster import REQUIRED, LocalCluster, unavailable


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    problem = unavailable()
    if problem:
        if REQUIRED:
            pytest.fail(f"SEATMAP_REQUIRE_CLUSTER=1 but no local cluster can be made: {problem}")
        pytest.skip(f"no local Redis Cluster: {problem}")
    made = LocalCluster.start()
    try:
        yield made
    finally:
        made.stop()
