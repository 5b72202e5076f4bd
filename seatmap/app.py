"""The ASGI application: route lists, middleware, the error mapping and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import TypedDict

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from seatmap import metrics, ops, resources, worker
from seatmap.accounts import auth, staff, users
from seatmap.accounts.origins import CrossOriginGuard
from seatmap.api import QueryGuard
from seatmap.catalog import auditoriums, cinemas, movies, scheduling, screenings
from seatmap.composition import open_runtime
from seatmap.errors import (
    CatchUnexpected,
    SeatmapError,
    http_handler,
    starlette_http_handler,
    unexpected_handler,
)
from seatmap.live import account_holds, blocks, holds, socket, suggestions
from seatmap.live.reconcile import Reconciler
from seatmap.logs import RequestLog, configure
from seatmap.runtime import Runtime, cancel, urls
from seatmap.sales import (
    attendees,
    bookings,
    boxoffice,
    cancellations,
    notifications,
    orders,
    payments,
    refund_admin,
    refunds,
    reports,
    seat_history,
    settlement,
    tickets,
    webhook_admin,
)
from seatmap.settings import Settings
from seatmap.simulated import provider, undelivered

log = logging.getLogger("seatmap.app")


class State(TypedDict):
    runtime: Runtime


def create_app(settings: Settings) -> Starlette:
    urls(settings)  # refuse now, not when the lifespan starts
    settings.base_url  # noqa: B018 (the same: outside dev mode SEATMAP_PUBLIC_URL must be set)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with open_runtime(settings, "web") as rt, contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(cancel, await _start(rt, stack))
            # Also on app.state, for code that holds the app rather than a request (tests, tools).
            app.state.runtime = rt
            yield {"runtime": rt}
            # From here on, background tasks end because we stop them: not a crash.
            rt.state.stopping.set()

    routes: list[BaseRoute] = [
        *ops.routes,
        *socket.routes,
        *provider.routes,
        Mount(
            "/api",
            routes=[
                *users.routes,
                *staff.routes,
                *cinemas.routes,
                *auditoriums.routes,
                *movies.routes,
                *screenings.routes,
                *scheduling.routes,
                *holds.routes,
                *account_holds.routes,
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
                *bookings.routes,
                *attendees.routes,
                *reports.routes,
                *seat_history.routes,
                *undelivered.routes,
                *webhook_admin.routes,
            ],
        ),
        Mount("/", app=StaticFiles(directory=resources.web_dir(), html=True), name="web"),
    ]
    return Starlette(
        routes=routes,
        # CatchUnexpected answers a bug's 500 and keeps the connection (errors.py); Exception's
        # handler stays for the middleware outside it. QueryGuard refuses NUL in a query string.
        middleware=[
            Middleware(RequestLog),
            Middleware(metrics.Metrics),
            Middleware(CatchUnexpected),
            Middleware(QueryGuard),
            Middleware(CrossOriginGuard, settings=settings),
        ],
        exception_handlers={
            SeatmapError: http_handler,
            HTTPException: starlette_http_handler,
            Exception: unexpected_handler,
        },
        lifespan=lifespan,
    )


async def _start(rt: Runtime, stack: contextlib.AsyncExitStack) -> list[asyncio.Task[None]]:
    """Start a web process's background tasks, each watched; returns those to cancel on leaving.

    The live map's pub/sub listener, the expiry (keyspace notifications and the sweeper behind
    them), the settlement sweeper, the provider's webhook pump, and in dev mode the jobs.
    """
    assert rt.channels is not None and rt.expiry is not None  # a web runtime has them
    tasks = await rt.channels.start()
    # A revoked user's tokens leave every process's trust cache at once (accounts/auth.py).
    await rt.channels.add_handler(auth.revocations_channel(rt), auth.revocation_listener(rt))
    if rt.settings.expiry_notifications:
        await rt.expiry.listen()
    tasks.append(asyncio.create_task(rt.expiry.sweep_forever(), name="expiry.sweeper"))
    tasks.append(asyncio.create_task(settlement.sweep_forever(rt), name="sales.sweeper"))
    reconciler = Reconciler(rt.holds.inventory, rt.settings.reconcile_interval)
    tasks.append(asyncio.create_task(reconciler.run_forever(), name="live.reconcile"))
    rt.provider.start()
    for task in tasks:
        rt.state.watch(task)
    if rt.settings.inline_worker:
        # Dev mode: this process runs the jobs too (refunds, notifications, order expiry),
        # so one `seatmap serve` is the whole product; production runs `seatmap worker`.
        inline = worker.background(rt, concurrency=min(rt.settings.job_concurrency, 8))
        await stack.enter_async_context(inline)  # watches its tasks; stops them on leaving
    return tasks


def app_from_environ() -> Starlette:
    """The uvicorn factory (`seatmap.app:app_from_environ`), used by every web process."""
    settings = Settings.from_environ(os.environ)
    configure(settings.log_level, settings.log_json)
    return create_app(settings)
