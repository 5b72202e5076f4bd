"""Operational endpoints: liveness, readiness."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.api import respond
from seatmap.runtime import runtime


async def healthz(request: Request) -> Response:
    """The process is alive and its event loop turns; says nothing about its dependencies."""
    return respond({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready for traffic: PostgreSQL and Redis both answer within a second."""
    rt = runtime(request)
    checks: dict[str, str] = {}

    async def check_pg() -> None:
        async with rt.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def check_redis() -> None:
        await rt.redis.ping()

    for name, probe in (("postgres", check_pg), ("redis", check_redis)):
        try:
            await asyncio.wait_for(probe(), timeout=1.0)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return respond({"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


routes: list[BaseRoute] = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
