"""The local Redis Cluster (tests/redis_cluster.py), one per session, for the tests in this folder.

Without a Redis 7 redis-server these tests skip, saying why; with SEATMAP_REQUIRE_CLUSTER=1 (CI)
they fail instead, so a CI machine that lost its redis-server cannot pass them silently.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from seatmap.composition import open_runtime
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import _settings
from tests.redis_cluster import REQUIRED, LocalCluster, unavailable
from tests.support import TIMEOUT_FACTOR, Viewer, make_screening


def own_cluster() -> Iterator[LocalCluster]:
    """A local cluster for a fixture: skipped where none can be made, unless CI requires one."""
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


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    yield from own_cluster()


@pytest.fixture
def settings(database_url: str, cluster: LocalCluster, tmp_path: Path) -> Settings:
    """The usual test settings, on the local cluster (SEATMAP_REDIS_CLUSTER=1, its seed nodes)."""
    return replace(_settings(database_url, cluster.url, tmp_path), redis_cluster=True)


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    """A worker's runtime on the cluster; its keys go with the cluster at the session's end."""
    async with open_runtime(settings, "worker") as runtime:
        yield runtime


async def screenings_on_every_shard(
    rt: Runtime, cluster: LocalCluster, rows: int = 2, **kw: Any
) -> list[int]:
    """One screening per primary (made until each shard owns one), in the primaries' order."""
    by_owner: dict[int, int] = {}
    primaries = {n.port for n in cluster.primaries()}
    for _ in range(60):
        screening = await make_screening(rt, ["SSSSSSSSSS"] * rows, **kw)
        port = cluster.owner(slot_of(screening)).port
        by_owner.setdefault(port, screening)
        if set(by_owner) == primaries:
            return [by_owner[p] for p in sorted(by_owner)]
    raise AssertionError(f"no screening on every shard: {by_owner}")


def slot_of(screening: int) -> int:
    """The cluster slot of a screening's keys and channel (its hash tag)."""
    return key_slot(f"x:{{scr:{screening}}}".encode())


class SeatView:
    """What one viewer shows: the snapshot it was sent, with every delta since applied."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.seats: dict[str, str] = {}
        self.seq = 0

    def apply(self, message: dict[str, Any]) -> None:
        if message["type"] == "snapshot":
            self.seats, self.seq = dict(message["seats"]), message["seq"]
        elif message["type"] == "delta":
            assert message["seq"] == self.seq + 1, f"delta {message['seq']} after {self.seq}"
            self.seq = message["seq"]
            for change in message["changes"]:
                if "seat" in change:
                    if change["state"] == "free":
                        self.seats.pop(change["seat"], None)
                    else:
                        self.seats[change["seat"]] = change["state"]

    async def pump(self, within: float) -> None:
        """Apply what arrives within `within` seconds (nothing arriving is fine)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.apply(await self.viewer.recv(within=left / TIMEOUT_FACTOR))
            except TimeoutError:
                return
