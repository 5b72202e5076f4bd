"""The two bare servers the live seat map is measured against.

Both subscribe to the screening's Redis pub/sub channel and forward every message, as it
arrives, to every connected socket on `/ws/screenings/{id}`: no snapshot, no seq checks, no
queues, no presence. So they deliver exactly the deltas the seat map server delivers, and
what they cost is the floor for doing that in Python:

- `websockets`: `websockets.asyncio.server.serve` and `websockets.broadcast` (frames written
  straight into each transport, no awaiting, no backpressure);
- `starlette`: a Starlette WebSocket endpoint under uvicorn (its `--ws` implementation
  chosen on the command line) looping `for ws in sockets: await ws.send_text(text)`.

    python -m bench.baselines --port 9001 --redis-url redis://... --channel 'bench:{scr:1}:chan'
    BENCH_REDIS_URL=... BENCH_CHANNEL=... uvicorn bench.baselines:starlette_app --factory --ws websockets
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.server import ServerConnection, broadcast, serve

PATH = "/ws/screenings/{screening:int}"


async def websockets_server(port: int, redis_url: str, channel: str) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    redis = aioredis.Redis.from_url(redis_url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    # Subscribed before listening: once the port answers, no delta can be missed.
    await pubsub.subscribe(channel)
    async with serve(handler, "127.0.0.1", port, backlog=4096):
        async for message in pubsub.listen():
            if message["type"] == "message":
                broadcast(clients, message["data"], text=True)


def starlette_app() -> Starlette:
    """The uvicorn factory; the Redis URL and channel come from BENCH_REDIS_URL and BENCH_CHANNEL."""
    redis_url, channel = os.environ["BENCH_REDIS_URL"], os.environ["BENCH_CHANNEL"]
    sockets: set[WebSocket] = set()

    async def forward(pubsub: aioredis.client.PubSub) -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            text: str = message["data"]
            for ws in list(sockets):
                try:
                    await ws.send_text(text)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    sockets.discard(ws)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        # uvicorn listens only after the lifespan started: subscribed before the port answers.
        await pubsub.subscribe(channel)
        task = asyncio.create_task(forward(pubsub))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pubsub.aclose()
        await redis.aclose()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        sockets.add(ws)
        try:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sockets.discard(ws)

    return Starlette(routes=[WebSocketRoute(PATH, endpoint)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description="The bare websockets.broadcast baseline server.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args()
    asyncio.run(websockets_server(args.port, args.redis_url, args.channel))


if __name__ == "__main__":
    main()
