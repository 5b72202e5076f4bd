"""The ASGI application: route lists, middleware, the error mapping and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from seatmap import metrics, ops, worker
from seatmap.accounts import users
from seatmap.catalog import auditoriums, cinemas, movies, scheduling, screenings
from seatmap.db import create_pool
from seatmap.errors import SeatmapError, http_handler, starlette_http_handler, unexpected_handler
from seatmap.live import blocks, holds, socket, suggestions
from seatmap.live.channels import Channels
from seatmap.live.expiry import Expiry
from seatmap.live.inventory import Inventory
from seatmap.logs import RequestLog, configure
from seatmap.runtime import Runtime
from seatmap.sales import (
    boxoffice,
    cancellations,
    notifications,
    orders,
    payments,
    refund_admin,
    refunds,
    settlement,
    tickets,
)
from seatmap.settings import Settings
from seatmap.simulated import provider

log = logging.getLogger("seatmap.app")


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
            # A blocking pool: under a burst, requests wait briefly for a connection instead
            # of failing with "Too many connections".
            # A command that meets a dead pooled connection (Redis restarted, an idle connection
            # dropped) reconnects and is sent again, twice at most; without `retry` on the pool,
            # redis-py would raise at once.
            redis_pool = aioredis.BlockingConnectionPool.from_url(
                redis_url, max_connections=64, timeout=10, decode_responses=True,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), 2),
            )  # fmt: skip
            redis = aioredis.Redis.from_pool(redis_pool)  # owns the pool: aclose() closes it
            stack.push_async_callback(redis.aclose)
            # The pub/sub connection without that retry: redis-py would reconnect it silently,
            # and Channels must see the drop to bring its viewers up to date (channels.py).
            listener = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=2)
            stack.push_async_callback(listener.aclose)
            rt = Runtime(settings=settings, pool=pool, redis=redis)
            inventory = Inventory(
                redis, pool, settings.redis_prefix, settings.recovery_log_length, settings.sweet_row
            )
            rt.extras["holds"] = holds.Holds(inventory, settings)
            channels = Channels(
                redis, inventory, queue_size=settings.ws_queue_size, heartbeat=settings.ws_heartbeat,
                listener=listener,
            )  # fmt: skip
            rt.channels = channels
            tasks = await channels.start()
            stack.push_async_callback(channels.stop)
            expiry = Expiry(
                redis, inventory, channels, hold_max=settings.hold_max, sweep_interval=settings.sweep_interval
            )
            rt.extras["expiry"] = expiry
            if settings.expiry_notifications:
                await expiry.listen()
            tasks.append(asyncio.create_task(expiry.sweep_forever(), name="expiry.sweeper"))
            await stack.enter_async_context(payments.open_provider(rt))
            if settings.inline_worker:
                # Dev mode: this process runs the jobs too (refunds, notifications, order expiry),
                # so one `seatmap serve` is the whole product; production runs `seatmap worker`.
                inline = worker.background(rt, asyncio.Event(), concurrency=min(settings.job_concurrency, 8))
                for task in await stack.enter_async_context(inline):
                    task.add_done_callback(lambda t: _crashed(rt, t))
            tasks.append(asyncio.create_task(settlement.sweep_forever(rt), name="sales.sweeper"))
            stack.push_async_callback(expiry.stop)
            stack.push_async_callback(_cancel, tasks)
            for task in tasks:
                task.add_done_callback(lambda t: _crashed(rt, t))
            # Also on app.state, for code that holds the app rather than a request (tests, tools).
            app.state.runtime = rt
            yield {"runtime": rt}
            # From here on, background tasks end because we stop them: not a crash.
            rt.extras["stopping"] = True

    routes: list[BaseRoute] = [
        *ops.routes,
        *socket.routes,
        *provider.routes,
        Mount(
            "/api",
            routes=[
                *users.routes,
                *cinemas.routes,
                *auditoriums.routes,
                *movies.routes,
                *screenings.routes,
                *scheduling.routes,
                *holds.routes,
                *blocks.routes,
                *suggestions.routes,
                *orders.routes,
                *payments.routes,
                *tickets.routes,
                *boxoffice.routes,
                *cancellations.routes,
                *refunds.routes,
                *refund_admin.routes,
                *notifications.routes,
            ],
        ),
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


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    # Cancel until each task has really ended: redis-py (8.1, Python 3.11) sometimes lets a
    # command return normally in a cancelled task, so a loop around it would keep running and
    # a single cancel() + await would hang the shutdown (Ctrl-C) forever.
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _crashed(rt: Runtime, task: asyncio.Task[None]) -> None:
    """A background task must never end while the process serves: say so loudly, fail /readyz."""
    if task.cancelled() or (rt.extras.get("stopping") and task.exception() is None):
        return
    rt.extras.setdefault("failed", []).append(task.get_name())
    log.critical(
        "background task %s stopped; this process is no longer ready",
        task.get_name(),
        exc_info=task.exception(),
    )


def app_from_environ() -> Starlette:
    """The uvicorn factory (`seatmap.app:app_from_environ`), used by every web process."""
    settings = Settings.from_environ(os.environ)
    configure(settings.log_level, settings.log_json)
    return create_app(settings)
