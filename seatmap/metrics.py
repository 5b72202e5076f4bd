"""Process metrics for Prometheus: the request middleware, and what is read at scrape time.

Everything counted as it happens is a module-level prometheus_client object in the default
`REGISTRY`, beside the code that counts (`seatmap_refunds_total` in sales/refunds.py,
`seatmap_jobs_total` in jobs.py, …), so `/metrics` shows it with no wiring. Each process keeps
its own numbers: Prometheus scrapes processes, not deployments.

Values that live in PostgreSQL (orders by state, the job queue) are not kept in memory, where
every process would hold a different, stale copy: `read` fetches them once per scrape, and
`Scrape` renders them after the default registry's metrics. A database that does not answer
in time leaves them out and says so (`seatmap_scrape_postgres_up 0`), rather than failing the
whole scrape or showing an empty queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seatmap import jobs
from seatmap.db import Pool

log = logging.getLogger("seatmap.metrics")

_STARTED_MONOTONIC: Final = time.monotonic()

Gauge("seatmap_process_uptime_seconds", "Seconds since this process loaded seatmap.").set_function(
    lambda: time.monotonic() - _STARTED_MONOTONIC
)
Gauge("seatmap_process_pid", "The process id, to tell web processes apart.").set_function(os.getpid)
http_requests: Final = Counter(
    "seatmap_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
http_duration: Final = Histogram(
    "seatmap_http_request_duration_seconds",
    "Time spent answering HTTP requests, by method and route template.",
    ["method", "route"],
)

UNMATCHED: Final = "unmatched"


def route_template(scope: Scope) -> str:
    """The route a request was routed to, as written (`/api/orders/{id:int}`), never the raw
    path: a label per URL would grow without bound (scanners, ids). Starlette's routers leave
    the innermost route in `scope["route"]`, and the mounts above it in `root_path` (as
    matched: a mount's own path parameters would show their values; ours have none)."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    mounted = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    if isinstance(route, Mount):  # a mount that answered itself (static files, 404 under /api)
        return f"{mounted}/{{path}}"
    path = getattr(route, "path", None)
    return f"{mounted}{path}" if isinstance(path, str) else UNMATCHED


class Metrics:
    """Pure ASGI middleware: counts every HTTP request by method, route and status, and times it.

    A request that raises before answering is counted as 500: the server error handler
    outside this middleware turns it into one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            method, route = scope["method"], route_template(scope)
            http_requests.labels(method, route, str(status)).inc()
            http_duration.labels(method, route).observe(time.perf_counter() - started)


# ---- read at scrape time -----------------------------------------------------------------------

READ_TIMEOUT: Final = 1.0  # seconds; Prometheus's default scrape timeout is 10
ORDERS_BY_STATE: Final = "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status"


@dataclass(frozen=True)
class Snapshot:
    """What one scrape read from PostgreSQL."""

    orders: dict[str, int]  # state -> orders in it
    jobs: list[jobs.Backlog]


async def read(pool: Pool) -> Snapshot | None:
    """The database's numbers for one scrape, or None if PostgreSQL did not answer within
    `READ_TIMEOUT` (a scrape must not hang on a stuck database: Prometheus would time out and
    lose the process metrics too)."""
    try:
        async with asyncio.timeout(READ_TIMEOUT), pool.acquire() as conn:
            orders = {r["status"]: r["n"] for r in await conn.fetch(ORDERS_BY_STATE)}
            return Snapshot(orders=orders, jobs=await jobs.backlog(conn))
    except Exception as exc:
        log.warning("metrics: PostgreSQL's numbers left out of this scrape: %r", exc)
        return None


def families(snapshot: Snapshot | None) -> Iterator[Metric]:
    """The scrape-time metric families of a snapshot (a state or kind with no rows has no series)."""
    up = GaugeMetricFamily(
        "seatmap_scrape_postgres_up",
        "1 if this scrape read the orders and jobs below from PostgreSQL, 0 if it timed out or failed.",
        value=0 if snapshot is None else 1,
    )
    yield up
    if snapshot is None:
        return
    orders = GaugeMetricFamily("seatmap_orders", "Orders in each state, now.", labels=["state"])
    for state, count in sorted(snapshot.orders.items()):
        orders.add_metric([state], count)
    queued = GaugeMetricFamily(
        "seatmap_jobs_queued", "Jobs waiting to run (due, or waiting for a retry), by kind.", labels=["kind"]
    )
    oldest = GaugeMetricFamily(
        "seatmap_jobs_oldest_age_seconds",
        "How long the longest-waiting due job of each kind has been due: workers falling behind.",
        labels=["kind"],
    )
    dead = GaugeMetricFamily(
        "seatmap_jobs_dead", "Jobs that ran out of attempts, by kind, until an admin retries them.",
        labels=["kind"],
    )  # fmt: skip
    for b in snapshot.jobs:
        queued.add_metric([b.kind], b.queued)
        oldest.add_metric([b.kind], b.oldest_due_seconds)
        dead.add_metric([b.kind], b.dead)
    yield from (orders, queued, oldest, dead)


@dataclass(frozen=True)
class Scrape:
    """One scrape's collector: the default registry (everything counted in this process),
    then the snapshot read from PostgreSQL for it."""

    snapshot: Snapshot | None

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        yield from families(self.snapshot)


def exposition(snapshot: Snapshot | None, accept: str) -> tuple[bytes, str]:
    """The body and content type Prometheus asked for (its Accept header picks the text format
    or OpenMetrics)."""
    encode, content_type = choose_encoder(accept)
    return encode(Scrape(snapshot)), content_type
