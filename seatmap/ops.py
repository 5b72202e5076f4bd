"""Operational endpoints: liveness, readiness, metrics, and the API's own description.

`/healthz` and `/readyz` are for the process supervisor and the load balancer, `/metrics`
for Prometheus, `/openapi.json` and `/docs` for people writing clients. None of them need a
login; put `/metrics` behind the router's allow-list if its numbers are private.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from seatmap import metrics, openapi, resources
from seatmap.api import documented, respond
from seatmap.runtime import runtime

TAGS = ("ops",)


class Health(msgspec.Struct):
    status: str
    pid: int  # which web process answered, when several share the port


class Readiness(msgspec.Struct):
    status: str  # "ready" or "unavailable"
    # "postgres"/"redis" -> "ok" or "error: <kind>"; "background" if a task died;
    # "expiry_notifications" if Redis will not send keyspace events (ready anyway: the sweeper restocks)
    checks: dict[str, str]


@documented("The process is alive", responses={200: Health}, tags=TAGS)
async def healthz(request: Request) -> Response:
    """The event loop turns; says nothing about PostgreSQL or Redis (that is /readyz)."""
    return respond(Health(status="ok", pid=os.getpid()))


@documented("PostgreSQL and Redis both answer", responses={200: Readiness, 503: Readiness}, tags=TAGS)
async def readyz(request: Request) -> Response:
    """Ready for traffic when PostgreSQL and Redis both answer within a second and no
    background task has died; 503 otherwise, so a load balancer stops sending requests to a
    process that could only fail them."""
    rt = runtime(request)

    async def check_pg() -> None:
        async with rt.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def check_redis() -> None:
        await rt.redis.ping()

    async def check(probe: Callable[[], Awaitable[None]]) -> str:
        try:
            await asyncio.wait_for(probe(), timeout=1.0)
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return "ok"

    pg, redis = await asyncio.gather(check(check_pg), check(check_redis))
    checks = {"postgres": pg, "redis": redis}
    # Background tasks (pub/sub, expiry sweeper, jobs) that died: runtime.ProcessState.watch.
    failed = [task.get_name() for task in rt.state.failed]
    if failed:
        checks["background"] = "stopped: " + ", ".join(failed)
    # Expired holds still go back on sale (the sweeper), so this is said, not failed on.
    if rt.expiry is not None and rt.expiry.notifications_problem:
        checks["expiry_notifications"] = rt.expiry.notifications_problem
    if pg == "ok" and redis == "ok" and not failed:
        return respond(Readiness(status="ready", checks=checks))
    return respond(Readiness(status="unavailable", checks=checks), 503)


@documented(
    "Process metrics in the Prometheus text format (or OpenMetrics, if asked)",
    responses={200: "text/plain"},
    tags=TAGS,
)
async def metrics_endpoint(request: Request) -> Response:
    """This process's counters (requests, holds, refunds, jobs, webhooks, sockets…), then orders
    by state and the job queue, read from PostgreSQL for this scrape (docs/operations.md)."""
    snapshot = await metrics.read(runtime(request).pool)
    body, content_type = metrics.exposition(snapshot, request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


@documented("This API described in OpenAPI 3.1", responses={200: dict[str, Any]}, tags=TAGS)
async def openapi_json(request: Request) -> Response:
    """Generated from the routes and the msgspec types they validate with; built once."""
    return Response(openapi.document(request.app), media_type="application/json")


@documented(
    "A readable, offline page of the API (renders /openapi.json)", responses={200: "text/html"}, tags=TAGS
)
async def docs(request: Request) -> Response:
    """Plain HTML and JS from `web/docs.html`; no CDN, so it works without internet access."""
    return FileResponse(resources.web_dir() / "docs.html", media_type="text/html; charset=utf-8")


routes: list[BaseRoute] = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
]
