"""Outgoing webhooks: what an event costs the change that writes it, and deliveries per second.

    .venv/bin/python -m bench.webhooks                      # embedded PostgreSQL and Redis
    .venv/bin/python -m bench.webhooks --events 2000 --fail-rate 0 0.3 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --redis-url redis://127.0.0.1:6379/0

1. **Emit.** `--events` transactions, each one `webhooks.emit` (what a sale, a check-in or a
   refund adds to its own transaction), with no endpoint subscribed, then with one: µs per
   transaction, beside an empty transaction's as the baseline.
2. **Deliver.** For each `--fail-rate`: `--events` events queued for one endpoint, a receiver on
   127.0.0.1 (uvicorn; verifies every signature, answers 503 to a seeded share of calls before
   processing) and one in-process job worker (`--concurrency`, quick retries) delivering them.
   Reported: events/s (all delivered / time from the first job to the last delivery), calls/s,
   p50/p99 of delivered_at - created_at, and checks: every event processed once, no bad signature.

Run by hand, never by the test suite; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import random
import secrets
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn

from bench.stage import new_database
from seatmap import jobs
from seatmap.composition import open_runtime
from seatmap.embedded import Urls, embedded_servers
from seatmap.errors import InvalidSignature
from seatmap.runtime import Runtime
from seatmap.sales import webhooks
from seatmap.sales.gateway import SIGNATURE_HEADER, verify_signature
from seatmap.settings import Secret, Settings


class Receiver:
    """A bare ASGI endpoint: verify, fail a seeded share, count each Webhook-Id processed."""

    def __init__(self, secret: str, fail_rate: float) -> None:
        self.secret = secret.encode()
        self.fail_rate = fail_rate
        self.rng = random.Random(14)
        self.calls = 0
        self.bad = 0
        self.processed: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.calls += 1
        status = 204
        try:
            verify_signature(
                self.secret, headers.get(SIGNATURE_HEADER.lower()), body, tolerance=300, now=time.time()
            )
        except InvalidSignature:
            self.bad += 1
            status = 400
        else:
            if self.rng.random() < self.fail_rate:
                status = 503
            else:
                self.processed[headers["webhook-id"]] += 1
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving(app: Receiver) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn has no started event)
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/hooks"
    finally:
        server.should_exit = True
        await task


async def emit_cost(rt: Runtime, events: int) -> dict[str, float]:
    """µs per transaction: empty, with an event nobody wants, with an event for one endpoint."""
    out: dict[str, float] = {}
    async with rt.pool.acquire() as conn:
        for label, endpoints in (("empty tx", -1), ("emit, 0 endpoints", 0), ("emit, 1 endpoint", 1)):
            await conn.execute("TRUNCATE webhook_endpoints CASCADE")
            if endpoints == 1:
                await conn.execute(
                    "INSERT INTO webhook_endpoints (url, event_types, secret) VALUES ($1, $2, 's')",
                    "https://x.example/h",
                    ["order.paid"],
                )
            started = time.perf_counter()
            for i in range(events):
                async with conn.transaction():
                    if endpoints >= 0:
                        await webhooks.emit(conn, rt.settings, "order.paid", {"order_id": i})
                    else:
                        await conn.execute("SELECT 1")
            out[label] = (time.perf_counter() - started) / events * 1e6
        await conn.execute("TRUNCATE webhook_endpoints, webhook_events CASCADE")
        await conn.execute("DELETE FROM jobs WHERE kind = $1", webhooks.JOB)
    return out


async def deliver(rt: Runtime, events: int, fail_rate: float, concurrency: int) -> dict[str, float]:
    secret = webhooks.new_secret()
    receiver = Receiver(secret, fail_rate)
    async with serving(receiver) as url:
        async with rt.pool.acquire() as conn:
            await conn.execute("TRUNCATE webhook_endpoints, webhook_events CASCADE")
            await conn.execute(
                "INSERT INTO webhook_endpoints (url, event_types, secret) VALUES ($1, $2, $3)", url,
                list(webhooks.EVENT_TYPES), secret,
            )  # fmt: skip
            async with conn.transaction():
                for i in range(events):
                    await webhooks.emit(conn, rt.settings, "order.paid", {"order_id": i})
        policy = jobs.Policy(concurrency=concurrency, max_attempts=50, backoff=0.05, max_backoff=0.5,
                             lease=30.0, poll_interval=0.1)  # fmt: skip
        sender = webhooks.Sender(rt)
        assert rt.settings.database_url is not None
        worker = jobs.Worker(rt.pool, rt.settings.database_url, {webhooks.JOB: sender.deliver}, policy)
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        try:
            async with rt.pool.acquire() as conn:
                left = "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"
                while await conn.fetchval(left):  # noqa: ASYNC110 (polling the database)
                    await asyncio.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            stop.set()
            await task
            await sender.aclose()
        async with rt.pool.acquire() as conn:
            p50, p99 = await conn.fetchval(
                "SELECT ARRAY[percentile_cont(0.5) WITHIN GROUP (ORDER BY x),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY x)]"
                " FROM (SELECT extract(epoch FROM d.delivered_at - e.created_at) * 1000 AS x"
                " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id) t"
            )
            recorded = await conn.fetchval("SELECT count(*) FROM webhook_events")
    once = len(receiver.processed) == recorded and set(receiver.processed.values()) == {1}
    return {
        "events/s": events / seconds,
        "calls/s": receiver.calls / seconds,
        "calls/event": receiver.calls / events,
        "p50 ms": p50,
        "p99 ms": p99,
        "exactly once": float(once),
        "bad signatures": float(receiver.bad),
    }


async def run(urls: Urls, args: argparse.Namespace) -> None:
    database, database_url = await new_database(urls.database_url)
    settings = Settings(
        database_url=database_url, redis_url=urls.redis_url, dev=True,
        jwt_secret=Secret(secrets.token_urlsafe(48)), redis_prefix=f"bench{uuid.uuid4().hex[:8]}",
        webhook_allow_private=True, job_concurrency=args.concurrency,
    )  # fmt: skip
    try:
        async with open_runtime(settings, "worker") as rt:
            print(f"emit, {args.events} transactions (µs each):")
            for label, us in (await emit_cost(rt, args.events)).items():
                print(f"  {label:20} {us:8.0f}")
            for rate in args.fail_rate:
                print(
                    f"deliver {args.events} events, receiver failing {rate:.0%},"
                    f" concurrency {args.concurrency}:"
                )
                result = await deliver(rt, args.events, rate, args.concurrency)
                print("  " + "  ".join(f"{k} {v:.1f}" for k, v in result.items()))
    finally:
        admin = await asyncpg.connect(urls.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.ERROR)  # not a line per retried attempt
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1000, help="events per phase")
    p.add_argument("--fail-rate", type=float, nargs="+", default=[0.0, 0.3], help="receiver failure shares")
    p.add_argument("--concurrency", type=int, default=32, help="jobs the worker runs at once")
    p.add_argument("--database-url", help="PostgreSQL to create the bench database in (default: embedded)")
    p.add_argument("--redis-url", help="Redis to use (default: embedded)")
    args = p.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp,
        embedded_servers(Path(tmp) / "data", args.database_url, args.redis_url) as urls,
    ):
        asyncio.run(run(urls, args))


if __name__ == "__main__":
    main()
