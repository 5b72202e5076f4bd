"""The ASGI application: route lists, middleware, the error mapping and the lifespan."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from seatmap import accounts, catalog, metrics, ops
from seatmap.db import create_pool
from seatmap.errors import SeatmapError, http_handler, starlette_http_handler, unexpected_handler
from seatmap.logs import RequestLog, configure
from seatmap.runtime import Runtime
from seatmap.settings import Settings


class State(TypedDict):
    runtime: Runtime


def web_dir() -> Path:
    """`web/` beside the package in a checkout, `seatmap/_web` inside an installed wheel."""
    packaged = Path(str(importlib.resources.files("seatmap"))) / "_web"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "web"


def create_app(settings: Settings) -> Starlette:
    if settings.database_url is None or settings.redis_url is None:
        raise SeatmapError("create_app needs DATABASE_URL and REDIS_URL (embedded.py provides them)")
    database_url, redis_url = settings.database_url, settings.redis_url

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with contextlib.AsyncExitStack() as stack:
            pool = await create_pool(database_url, min_size=1, max_size=20)
            stack.push_async_callback(pool.close)
            redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
            stack.push_async_callback(redis.aclose)
            rt = Runtime(settings=settings, pool=pool, redis=redis)
            yield {"runtime": rt}

    routes: list[BaseRoute] = [
        *ops.routes,
        Mount("/api", routes=[*accounts.routes, *catalog.routes]),
        Mount("/", app=StaticFiles(directory=web_dir(), html=True), name="web"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestLog), Middleware(metrics.Metrics)],
        exception_handlers={
            SeatmapError: http_handler,
            HTTPException: starlette_http_handler,
            Exception: unexpected_handler,
        },
        lifespan=lifespan,
    )


def app_from_environ() -> Starlette:
    """The uvicorn factory (`seatmap.app:app_from_environ`), used by every web process."""
    settings = Settings.from_environ(os.environ)
    configure(settings.log_level, settings.log_json)
    return create_app(settings)
