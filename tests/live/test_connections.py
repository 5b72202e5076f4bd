"""Open sockets per client address, capped across processes (SEATMAP_WS_MAX_PER_ADDRESS)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest
import websockets

from seatmap.app import create_app
from seatmap.live.connections import FRESH_MS
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.support import TIMEOUT_FACTOR, Server, Viewer, make_screening


@pytest.fixture
async def two_servers(
    rt: Runtime, make_settings: Callable[..., Settings]
) -> AsyncIterator[tuple[Server, Server]]:
    """Two web processes (each its own runtime and process id) on the same Redis, capped at 3."""
    capped = make_settings(ws_max_per_address=3)
    async with running(create_app(capped)) as one, running(create_app(capped)) as other:
        yield one, other


async def refused(server: Server, screening: int) -> websockets.InvalidStatus:
    with pytest.raises(websockets.InvalidStatus) as refusal:
        await Viewer.connect(server, screening)
    return refusal.value


async def test_sockets_beyond_the_cap_per_address_are_refused_with_429(
    rt: Runtime, two_servers: tuple[Server, Server]
) -> None:
    """The 4th socket from one address, on either process, gets HTTP 429 naming the limit; a slot
    freed by closing is usable again at once."""
    one, other = two_servers
    screening = await make_screening(rt, ["SSSS"])
    open_ = [await Viewer.connect(one, screening), await Viewer.connect(one, screening)]
    open_.append(await Viewer.connect(other, screening))
    for viewer in open_:
        await viewer.next("snapshot")
    for server in (one, other):
        refusal = await refused(server, screening)
        assert refusal.response.status_code == 429
        error = json.loads(refusal.response.body)["error"]
        assert (error["code"], error["limit"]) == ("too_many_sockets", 3)
    # The viewers that are in keep working.
    assert (await open_[0].command(type="ping"))["type"] == "pong"
    await open_.pop().close()
    async with asyncio.timeout(5 * TIMEOUT_FACTOR):
        while True:
            with contextlib.suppress(websockets.InvalidStatus):
                again = await Viewer.connect(one, screening)
                break
            await asyncio.sleep(0.05)
    await again.next("snapshot")
    for viewer in [*open_, again]:
        await viewer.close()


async def test_a_dead_process_does_not_keep_its_slots(
    rt: Runtime, two_servers: tuple[Server, Server]
) -> None:
    """Counts left behind by a process that died (not rewritten for FRESH_MS) are not counted."""
    one, _ = two_servers
    screening = await make_screening(rt, ["SSSS"])
    assert one.runtime is not None and one.runtime.channels is not None
    key = one.runtime.channels.connections.key("127.0.0.1")
    stale_ms = int(time.time() * 1000) - FRESH_MS - 1000
    await rt.redis.hset(key, "crashed-process", f"3:{stale_ms}")
    viewers = [await Viewer.connect(one, screening) for _ in range(3)]
    for viewer in viewers:
        await viewer.next("snapshot")
    assert await rt.redis.hget(key, "crashed-process") is None
    assert (await refused(one, screening)).response.status_code == 429
    for viewer in viewers:
        await viewer.close()
