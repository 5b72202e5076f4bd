"""A real integrator's endpoint on 127.0.0.1 and a worker delivering to it (webhook tests)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seatmap import jobs, worker
from seatmap.composition import open_runtime
from seatmap.errors import InvalidSignature
from seatmap.runtime import Runtime
from seatmap.sales import webhooks
from seatmap.sales.gateway import SIGNATURE_HEADER, verify_signature
from seatmap.settings import Settings
from tests.support import TIMEOUT_FACTOR

# Retries come quickly here; the production back-off is SEATMAP_JOB_BACKOFF (2 s, doubling).
FAST = jobs.Policy(
    concurrency=8, max_attempts=25, backoff=0.05, max_backoff=0.2, lease=10.0, poll_interval=0.1
)


@dataclass
class Receiver:
    """An integrator's endpoint: verifies every signature, fails `fail_rate` of the calls (seeded,
    before processing anything), and processes each Webhook-Id once, as the docs tell it to."""

    fail_rate: float = 0.0
    seed: int = 14
    secrets: list[str] = field(default_factory=list)
    calls: list[tuple[str, bool]] = field(default_factory=list)  # (Webhook-Id, answered 2xx)
    processed: collections.Counter[str] = field(default_factory=collections.Counter)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused_signatures: int = 0
    signatures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        header = request.headers.get(SIGNATURE_HEADER)
        self.signatures.append(header or "")
        for secret in self.secrets:
            try:
                verify_signature(secret.encode(), header, body, tolerance=300, now=time.time())
                break
            except InvalidSignature:
                continue
        else:
            self.refused_signatures += 1
            return Response("bad signature", status_code=400)
        event = json.loads(body)
        webhook_id = request.headers["webhook-id"]
        assert webhook_id == event["id"] and request.headers["seatmap-event"] == event["type"]
        if self.rng.random() < self.fail_rate:
            self.calls.append((webhook_id, False))
            return Response("try again later", status_code=503)
        self.calls.append((webhook_id, True))
        if webhook_id not in self.processed:  # the dedupe every receiver does
            self.events[webhook_id] = event
        self.processed[webhook_id] += 1
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    """The receiver on uvicorn, port 0 on 127.0.0.1; yields its URL."""
    app = Starlette(routes=[Route("/hooks", receiver.endpoint, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10 * TIMEOUT_FACTOR):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def delivering(settings: Settings, policy: jobs.Policy = FAST) -> AsyncIterator[Runtime]:
    """A worker process's runtime running every job kind (webhooks included) with quick retries."""
    async with open_runtime(settings, "worker") as wrt:
        assert settings.database_url is not None
        sender = webhooks.Sender(wrt)
        runner = jobs.Worker(wrt.pool, settings.database_url, worker.handlers(wrt, sender), policy)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            yield wrt
        finally:
            stop.set()
            await task
            await sender.aclose()


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    async with asyncio.timeout(within * TIMEOUT_FACTOR):
        while not await check():  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.05)
