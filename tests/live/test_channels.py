"""Fan-out: slow sockets never hold up the others, memory stays bounded, pub/sub heals itself."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from dataclasses import replace

import httpx
import websockets
from prometheus_client import REGISTRY
from redis.asyncio.cluster import RedisCluster

from seatmap.accounts.auth import Principal
from seatmap.app import create_app
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.redis_cluster import on_every_node
from tests.support import TIMEOUT_FACTOR, Viewer, make_screening, quick_users


async def test_a_client_that_stops_reading_does_not_delay_others(rt: Runtime, settings: Settings) -> None:
    """With one socket not reading at all, the others still get every delta promptly and in order."""
    # Big deltas (a whole 100-seat row each) so that a few megabytes, more than the kernel
    # buffers on loopback can absorb, pile up behind the stalled socket.
    screening = await make_screening(rt, ["S" * 100] * 10)
    small = replace(settings, ws_queue_size=16, hold_max_seats=100)
    async with running(create_app(small)) as srv:
        assert srv.runtime is not None
        holds = srv.runtime.holds
        # The stalled client: a tiny receive buffer and a library queue of one frame, never read.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.connect(("127.0.0.1", int(srv.http.rsplit(":", 1)[1])))
        stalled = await websockets.connect(
            f"{srv.ws}/ws/screenings/{screening}", sock=sock, max_queue=1, compression=None, close_timeout=1
        )
        too_slow = REGISTRY.get_sample_value("seatmap_resyncs_total", {"reason": "too_slow"}) or 0
        lagged = REGISTRY.get_sample_value("seatmap_fanout_lag_seconds_count") or 0
        fast = [await Viewer.connect(srv, screening, compression=None) for _ in range(3)]
        first = [(await v.next("snapshot"))["seq"] for v in fast]
        users = await quick_users(rt, 10)
        who = [Principal(user_id=u.id, role="customer", jti="x", expires_at=0) for u in users]
        rows = "ABCDEFGHIJ"
        rounds = 70
        changes = rounds * 2 * len(who)
        latencies: list[float] = []

        async def read_all(viewer: Viewer, start: int) -> list[int]:
            seqs = []
            for _ in range(changes):
                delta = await viewer.next("delta", within=5)
                seqs.append(delta["seq"])
                latencies.append(time.time() * 1000 - delta["ts"])
            return seqs

        readers = [asyncio.create_task(read_all(v, s)) for v, s in zip(fast, first, strict=True)]
        for _ in range(rounds):
            tokens = []
            for i, principal in enumerate(who):
                seats = [f"{rows[i]}{n}" for n in range(1, 101)]
                tokens.append((await holds.create(principal, screening, seats)).token)
            for principal, token in zip(who, tokens, strict=True):
                await holds.release(principal, token)
            await asyncio.sleep(0.01)
        for start, seqs in zip(first, await asyncio.gather(*readers), strict=True):
            assert seqs == list(range(start + 1, start + changes + 1))
        channel = srv.runtime.channels.channels[screening] if srv.runtime.channels else None
        assert channel is not None
        stuck = [w for w in channel.feed.watchers if w.resyncs > 0]
        assert stuck, "the stalled socket should have been reset to a snapshot"
        assert all(len(w.pending) <= 16 for w in channel.feed.watchers)
        assert (REGISTRY.get_sample_value("seatmap_resyncs_total", {"reason": "too_slow"}) or 0) > too_slow
        assert (REGISTRY.get_sample_value("seatmap_fanout_lag_seconds_count") or 0) >= lagged + changes
        p99 = statistics.quantiles(latencies, n=100)[98]
        assert p99 < 1000 * TIMEOUT_FACTOR, f"p99 {p99:.0f} ms with a stalled client"
        # Once it reads again, the stalled client converges on the same map (via a snapshot).
        final = await Viewer.connect(srv, screening)
        expected = (await final.next("snapshot"))["seats"]
        seen: dict[str, str] = {}
        async with asyncio.timeout(10 * TIMEOUT_FACTOR):
            while True:
                message = await asyncio.wait_for(stalled.recv(), 5 * TIMEOUT_FACTOR)
                if '"snapshot"' in str(message)[:30]:
                    import json

                    seen = json.loads(message)["seats"]
                    if seen == expected:
                        break
        assert seen == expected == {}
        for v in [*fast, final]:
            await v.close()
        await stalled.close()


async def test_viewers_catch_up_after_the_pubsub_connection_drops(
    rt: Runtime, server: object, client: httpx.AsyncClient
) -> None:
    """Killing the process's pub/sub connection loses nothing: viewers get every change, in order."""
    from tests.support import Server

    assert isinstance(server, Server) and server.runtime is not None
    screening = await make_screening(rt, ["SSSSSSSSSS"] * 2)
    users = await quick_users(rt, 6)
    viewer = await Viewer.connect(server, screening)
    start = (await viewer.next("snapshot"))["seq"]
    channels = server.runtime.channels
    assert channels is not None
    before = channels.reconnects
    counted = REGISTRY.get_sample_value("seatmap_pubsub_reconnects_total") or 0
    await on_every_node(rt.redis, "CLIENT KILL", "TYPE", "pubsub")
    for i, user in enumerate(users):
        r = await client.post(
            "/api/holds", json={"screening_id": screening, "seats": [f"A{i + 1}"]}, headers=user.headers
        )
        assert r.status_code == 201
    seqs = [(await viewer.next("delta", within=5))["seq"] for _ in users]
    assert seqs == list(range(start + 1, start + len(users) + 1))
    # One pub/sub connection per process, on a cluster one per primary: each dropped, each counted.
    dropped = len(rt.redis.get_primaries()) if isinstance(rt.redis, RedisCluster) else 1
    async with asyncio.timeout(5 * TIMEOUT_FACTOR):
        while channels.reconnects < before + dropped:  # noqa: ASYNC110 (polling a counter the server bumps)
            await asyncio.sleep(0.05)
    assert REGISTRY.get_sample_value("seatmap_pubsub_reconnects_total") == counted + dropped
    # And the reconnected subscription carries new changes again.
    (late,) = await quick_users(rt, 1)
    body = {"screening_id": screening, "seats": ["B1"]}
    r = await client.post("/api/holds", json=body, headers=late.headers)
    assert r.status_code == 201
    delta = await viewer.next("delta", within=5)
    assert delta["seq"] == start + len(users) + 1 and delta["changes"] == [{"seat": "B1", "state": "held"}]
    await viewer.close()
