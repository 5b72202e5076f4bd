"""The local cluster itself: three primaries that each serve a third of the slots, sharded pub/sub."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from tests.redis_cluster import LocalCluster

# Six Redis servers of its own, primaries killed and slots moved: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_three_primaries_serve_every_slot(cluster: LocalCluster) -> None:
    """Six nodes, three primaries; a key written through one seed is read back from its slot's owner."""
    assert len(cluster.nodes) == 6
    assert len(cluster.primaries()) == 3
    seed = ClusterNode("127.0.0.1", cluster.nodes[0].port)
    client = RedisCluster(startup_nodes=[seed], decode_responses=True)
    try:
        for i in range(30):
            await client.set(f"fixture:{{k{i}}}", str(i))
        owners = {getattr(client.get_node_from_key(f"fixture:{{k{i}}}"), "port", None) for i in range(30)}
        assert len(owners) == 3
        owner = cluster.owner(client.keyslot("fixture:{k7}"))
        direct = aioredis.Redis(port=owner.port, decode_responses=True)
        try:
            assert await direct.get("fixture:{k7}") == "7"
        finally:
            await direct.aclose()
    finally:
        await client.aclose()


async def test_sharded_publish_reaches_the_shards_subscriber(cluster: LocalCluster) -> None:
    """SPUBLISH on the slot's primary is heard by an SSUBSCRIBE there (Redis 7's sharded pub/sub)."""
    owner = cluster.owner(key_slot(b"chan:{x}"))
    sub = aioredis.Redis(port=owner.port, decode_responses=True)
    pub = aioredis.Redis(port=owner.port, decode_responses=True)
    pubsub = sub.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.ssubscribe("chan:{x}")
        assert await pub.spublish("chan:{x}", "hello") == 1
        async with asyncio.timeout(5):
            while (message := await pubsub.get_sharded_message(timeout=1)) is None:
                pass
        assert message["data"] == "hello"
    finally:
        await pubsub.aclose()
        await sub.aclose()
        await pub.aclose()
