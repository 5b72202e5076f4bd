"""The live map on a Redis Cluster: scripts on their slot's primary, sharded fan-out, restocking."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime

import httpx
import pytest
import redis.asyncio as aioredis

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.cluster.conftest import screenings_on_every_shard, slot_of
from tests.redis_cluster import LocalCluster
from tests.shopping import race_for_seats
from tests.support import Viewer, quick_users
from tests.test_multiprocess import freed_by, web_processes

# Six Redis servers of its own, primaries killed and slots moved: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_viewers_on_two_processes_see_every_change_on_every_shard(
    rt: Runtime, settings: Settings, cluster: LocalCluster
) -> None:
    """Holds, releases and expiries on screenings of all three shards reach viewers on both web
    processes, each screening's deltas with consecutive seqs, and each process keeps one sharded
    subscription per shard."""
    # Two screenings per shard: one subscription connection per shard carries both.
    screenings = await screenings_on_every_shard(rt, cluster) + await screenings_on_every_shard(rt, cluster)
    users = await quick_users(rt, len(screenings))
    async with (
        web_processes(settings, 2, SEATMAP_REDIS_CLUSTER="1", SEATMAP_HOLD_TTL="2") as servers,
        httpx.AsyncClient() as client,
    ):
        viewers = {(srv.http, s): await Viewer.connect(srv, s) for srv in servers for s in screenings}
        start = {key: (await v.next("snapshot"))["seq"] for key, v in viewers.items()}
        # A sharded subscriber of our own on each screening's primary: the scripts SPUBLISH there.
        listeners = []
        for screening in screenings:
            owner = cluster.owner(slot_of(screening))
            plain = aioredis.Redis(port=owner.port, decode_responses=True)
            pubsub = plain.pubsub(ignore_subscribe_messages=True)
            await pubsub.ssubscribe(f"{settings.redis_prefix}:{{scr:{screening}}}:chan")
            listeners.append((plain, pubsub))
        tokens = []
        for user, screening in zip(users, screenings, strict=True):
            r = await client.post(
                f"{servers[0].http}/api/holds",
                json={"screening_id": screening, "seats": ["A1", "A2"]}, headers=user.headers,
            )  # fmt: skip
            assert r.status_code == 201, r.text
            tokens.append(r.json()["token"])
        # Released through the other process: A2 of each, then A1 expires.
        for user, token in zip(users, tokens, strict=True):
            r = await client.post(
                f"{servers[1].http}/api/holds/{token}/seats", json={"remove": ["A2"]}, headers=user.headers
            )
            assert r.status_code == 200, r.text
        for (_, screening), viewer in viewers.items():
            seen = [await viewer.next("delta", within=6) for _ in range(3)]
            first = start[(_, screening)]
            assert [d["seq"] for d in seen] == [first + 1, first + 2, first + 3]
            assert seen[0]["changes"] == [{"seat": "A1", "state": "held"}, {"seat": "A2", "state": "held"}]
            assert seen[1]["changes"] == [{"seat": "A2", "state": "free"}]
            assert seen[2]["changes"] == [{"seat": "A1", "state": "free"}]
        for plain, pubsub in listeners:
            async with asyncio.timeout(5):
                while (message := await pubsub.get_sharded_message(timeout=1)) is None:
                    pass
            assert message["type"] == "smessage" and '"type":"delta"' in message["data"]
            await pubsub.aclose()
            await plain.aclose()
        # One sharded subscription connection per shard per process, whatever it carries.
        for node in cluster.primaries():
            names = [f"{settings.redis_prefix}:{{scr:{s}}}:chan" for s in screenings]
            out = node.cli("PUBSUB", "SHARDNUMSUB", *names).split()
            counts = dict(zip(out[::2], map(int, out[1::2]), strict=True))
            assert sorted(counts.values()) == [0, 0, 0, 0, 2, 2], (node.port, counts)
            # ...on one pub/sub connection per process: two on every primary, not one per screening.
            clients = [line for line in node.cli("CLIENT", "LIST", "TYPE", "pubsub").splitlines() if line]
            assert len(clients) == 2, (node.port, clients)
        for viewer in viewers.values():
            await viewer.close()


async def test_200_clients_race_on_a_cluster_has_one_holder_per_seat(
    rt: Runtime, cluster: LocalCluster, client: httpx.AsyncClient
) -> None:
    """200 buyers at once on overlapping seats of one screening: one holder per seat, and the map
    on the slot's primary shows exactly the seats the winners were granted."""
    (screening, *_) = await screenings_on_every_shard(rt, cluster, strand_rule=False)
    users = await quick_users(rt, 200)
    labels = [f"{row}{n}" for row in "AB" for n in range(1, 11)]
    responses, holder = await race_for_seats(client, users, screening, labels)
    seat_map = await rt.holds.inventory.snapshot(screening)
    assert seat_map.seats == {seat: "held" for seat in holder}
    assert sum(r.status_code == 201 for r in responses) >= 3


@pytest.mark.parametrize("notifications", ["1", "0"], ids=["keyspace-events", "sweeper-only"])
async def test_expiry_on_every_shard_frees_each_seat_once(
    rt: Runtime, settings: Settings, cluster: LocalCluster, notifications: str
) -> None:
    """1 s holds on a screening of each shard expire: viewers on both processes get exactly one
    `free` per seat, soon after the deadline, with keyspace events on every primary or without."""
    screenings = await screenings_on_every_shard(rt, cluster)
    users = await quick_users(rt, len(screenings))
    flags = "Ex" if notifications == "1" else ""
    for node in cluster.nodes:
        if node.alive:
            node.cli("CONFIG", "SET", "notify-keyspace-events", flags)
    try:
        async with (
            web_processes(
                settings, 2, SEATMAP_REDIS_CLUSTER="1", SEATMAP_HOLD_TTL="1",
                SEATMAP_EXPIRY_NOTIFICATIONS=notifications,
            ) as servers,
            httpx.AsyncClient() as client,
        ):  # fmt: skip
            viewers = [(s, await Viewer.connect(srv, s)) for srv in servers for s in screenings]
            for _, v in viewers:
                await v.next("snapshot")
            deadline = 0.0
            for user, screening in zip(users, screenings, strict=True):
                r = await client.post(
                    f"{servers[0].http}/api/holds",
                    json={"screening_id": screening, "seats": ["A1", "A2", "B1"]}, headers=user.headers,
                )  # fmt: skip
                assert r.status_code == 201, r.text
                deadline = max(deadline, datetime.fromisoformat(r.json()["expires_at"]).timestamp())

            for freed in await asyncio.gather(*(freed_by(v, deadline) for _, v in viewers)):
                assert freed == Counter({"A1": 1, "A2": 1, "B1": 1})
            for _, v in viewers:
                await v.close()
    finally:
        for node in cluster.nodes:
            if node.alive:
                node.cli("CONFIG", "SET", "notify-keyspace-events", "Ex")
