"""A watched screening's slot migrates to another primary while viewers watch and buyers hold."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.cluster.conftest import SeatView, screenings_on_every_shard, slot_of
from tests.redis_cluster import LocalCluster
from tests.support import TIMEOUT_FACTOR, Viewer, quick_users
from tests.test_multiprocess import web_processes

# Six Redis servers of its own, primaries killed and slots moved: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_a_slot_moves_under_viewers_and_buyers(
    rt: Runtime, settings: Settings, cluster: LocalCluster
) -> None:
    """Migrating the slot of a watched screening (CLUSTER SETSLOT … MIGRATING/IMPORTING, MIGRATE,
    SETSLOT NODE) while holds go on: every viewer on both processes ends on the map the new owner
    holds with no delta lost or repeated (each seq the one after the last, or a fresh snapshot),
    each process's subscription follows the slot, and holds keep working."""
    screenings = await screenings_on_every_shard(rt, cluster, rows=6)
    screening = screenings[0]
    slot = slot_of(screening)
    source = cluster.owner(slot)
    target = next(n for n in cluster.primaries() if n is not source)
    users = await quick_users(rt, 60)
    labels = [f"{row}{n}" for row in "ABCDEF" for n in range(1, 11)]
    channel = f"{settings.redis_prefix}:{{scr:{screening}}}:chan"
    async with (
        web_processes(settings, 2, SEATMAP_REDIS_CLUSTER="1") as servers,
        httpx.AsyncClient(timeout=30) as client,
    ):
        views = [SeatView(await Viewer.connect(srv, screening)) for srv in servers]
        for view in views:
            view.apply(await view.viewer.next("snapshot"))
        granted: dict[str, int] = {}
        failures: list[int] = []
        stop = asyncio.Event()

        async def buyers() -> None:
            for i, seat in enumerate(labels):
                if stop.is_set():
                    return
                r = await client.post(
                    f"{servers[i % 2].http}/api/holds",
                    json={"screening_id": screening, "seats": [seat]}, headers=users[i].headers,
                )  # fmt: skip
                if r.status_code == 201:
                    granted[seat] = users[i].id
                else:
                    failures.append(r.status_code)
                await asyncio.sleep(0.02)

        async def pump() -> None:
            while not stop.is_set():
                for view in views:
                    await view.pump(0.05)

        buying = asyncio.create_task(buyers())
        pumping = asyncio.create_task(pump())
        await asyncio.sleep(0.3)
        moved = await asyncio.to_thread(cluster.migrate_slot, slot, target)
        assert moved > 0 and cluster.owner(slot) is target
        await asyncio.sleep(0.5)
        stop.set()
        await buying
        await pumping
        # Holds keep working on the new owner.
        r = await client.post(
            f"{servers[1].http}/api/holds", json={"screening_id": screening, "seats": ["F10"]},
            headers=users[-1].headers,
        )  # fmt: skip
        assert r.status_code in (201, 409), r.text
        truth = await rt.holds.inventory.snapshot(screening)
        deadline = time.monotonic() + 10 * TIMEOUT_FACTOR
        while any(v.seats != truth.seats or v.seq != truth.seq for v in views):
            assert time.monotonic() < deadline, ([(v.seq, v.seats) for v in views], truth)
            for view in views:
                await view.pump(0.2)
            truth = await rt.holds.inventory.snapshot(screening)
        assert set(granted) <= set(truth.seats), "a granted hold is missing after the move"
        assert len(granted) > 5, (granted, failures)
        # What a buyer is told while the slot's keys are split between two nodes: try again.
        assert set(failures) <= {409, 503}, failures
        out = target.cli("PUBSUB", "SHARDNUMSUB", channel).split()
        assert out[1] == "2", f"both processes subscribed on the new owner: {out}"
        assert source.cli("PUBSUB", "SHARDNUMSUB", channel).split()[1] == "0"
        print(f"\nreshard: {moved} keys moved, {len(granted)} holds, refused meanwhile: {failures}")
        for view in views:
            await view.viewer.close()
