"""What a running process holds open, built in one place for every kind of process.

`open_runtime(settings, role)` opens the PostgreSQL pool, the Redis client, the live holds, the
payment provider and, for a web process, the pub/sub listener, the channels and the expiry, and
yields a frozen `Runtime` with a typed field for each. It starts no background task: the web
lifespan (app.py) and the worker (worker.py) start theirs on it, and the tests open the same
runtime to reach the databases a server uses without running a second sweeper or webhook pump.

Everything that changes while the process runs sits in one mutable `ProcessState`: which
background tasks died, whether the process is stopping, and two caches. A background task is
handed to `ProcessState.watch`, so a crash is told apart from a stop in one place.

The lifespan puts the `Runtime` in the lifespan state, from where Starlette copies it to every
request and WebSocket; `runtime(conn)` gets it back, typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from starlette.requests import HTTPConnection

from seatmap.db import Pool, create_pool
from seatmap.errors import ConfigError
from seatmap.settings import Settings

if TYPE_CHECKING:
    from seatmap.accounts.auth import Principal
    from seatmap.live.channels import Channels
    from seatmap.live.expiry import Expiry
    from seatmap.live.holds import Holds
    from seatmap.sales.gateway import PaymentProvider

log = logging.getLogger("seatmap.runtime")

Role = Literal["web", "worker"]

# A worker's job holds a connection only while it talks to PostgreSQL, not while it waits for the
# gateway, so many jobs share fewer connections (PostgreSQL allows 100 by default, for every
# process); a few more serve the claim loop, lease renewal, housekeeping and mail.
_MAX_JOB_CONNECTIONS: Final = 20
_SPARE_CONNECTIONS: Final = 4


@dataclass(eq=False)
class ProcessState:
    """The part of a process that changes while it runs; everything else in `Runtime` is fixed."""

    # Set when the process begins to stop: from then on a background task that returns is done,
    # not crashed. The worker's signal handlers set it; the web lifespan sets it after serving.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Background tasks that ended while the process ran: /readyz names them, the worker exits.
    failed: list[asyncio.Task[None]] = field(default_factory=list)
    crashed: asyncio.Event = field(default_factory=asyncio.Event)
    # accounts/auth.py: tokens verified lately, with when (so a burst costs one verification).
    trusted_tokens: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    # sales/settlement.py: orders shown sold and not yet written down as such.
    published_orders: set[int] = field(default_factory=set)

    def watch(self, task: asyncio.Task[None]) -> None:
        """A background task must not end while the process runs: if it does, say so loudly."""
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (self.stopping.is_set() and task.exception() is None):
            return
        self.failed.append(task)
        self.crashed.set()
        log.critical(
            "background task %s stopped; this process can no longer do its work",
            task.get_name(),
            exc_info=task.exception(),
        )

    async def until_stopped(self) -> None:
        """Wait until the process is told to stop or a background task dies; then it is stopping."""
        stop = asyncio.create_task(self.stopping.wait(), name="runtime.stop")
        crash = asyncio.create_task(self.crashed.wait(), name="runtime.crash")
        try:
            await asyncio.wait([stop, crash], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop, crash):
                waiter.cancel()
            await asyncio.gather(stop, crash, return_exceptions=True)
        self.stopping.set()  # after a crash too: the other tasks finish what they are doing

    def crash(self) -> BaseException | None:
        """What the first background task to die raised (or said by returning), if one died."""
        if not self.failed:
            return None
        task = self.failed[0]
        return task.exception() or RuntimeError(f"background task {task.get_name()} returned while running")


@dataclass(frozen=True, eq=False)
class Runtime:
    settings: Settings
    role: Role
    pool: Pool
    redis: aioredis.Redis
    holds: Holds
    # The same holds, tuned for checkout (sales/settlement.py: `checkout_settings`).
    checkout_holds: Holds
    provider: PaymentProvider
    # The live map's fan-out and restocking run in web processes only.
    channels: Channels | None
    expiry: Expiry | None
    state: ProcessState

    def key(self, *parts: str | int) -> str:
        """A global (not per-screening) Redis key under this deployment's prefix."""
        return ":".join([self.settings.redis_prefix, *map(str, parts)])


def runtime(conn: HTTPConnection) -> Runtime:
    value = conn.state.runtime
    assert isinstance(value, Runtime)
    return value


def urls(settings: Settings) -> tuple[str, str]:
    """(DATABASE_URL, REDIS_URL); a process that serves or works cannot start without both."""
    if settings.database_url is None or settings.redis_url is None:
        raise ConfigError("DATABASE_URL and REDIS_URL are both needed (`seatmap serve` starts embedded ones)")
    return settings.database_url, settings.redis_url


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, role: Role) -> AsyncIterator[Runtime]:
    """Open what a process of `role` holds, and close it all again on leaving, in reverse."""
    # Imported here: these modules import this one for `Runtime`, and only the chosen provider loads.
    from seatmap.live.channels import Channels
    from seatmap.live.expiry import Expiry
    from seatmap.live.holds import Holds
    from seatmap.live.inventory import Inventory
    from seatmap.sales.settlement import checkout_settings

    database_url, redis_url = urls(settings)
    async with contextlib.AsyncExitStack() as stack:
        if role == "web":
            pool = await create_pool(database_url, min_size=1, max_size=20)
        else:
            jobs = min(settings.job_concurrency, _MAX_JOB_CONNECTIONS)
            pool = await create_pool(database_url, min_size=2, max_size=jobs + _SPARE_CONNECTIONS)
        stack.push_async_callback(pool.close)
        # A blocking pool: under a burst, commands wait briefly for a connection instead of
        # failing with "Too many connections". A command that meets a dead pooled connection
        # (Redis restarted, an idle connection dropped) reconnects and is sent again, twice at
        # most; without `retry` on the pool, redis-py would raise at once.
        redis_pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=64, timeout=10, decode_responses=True,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), 2),
        )  # fmt: skip
        redis = aioredis.Redis.from_pool(redis_pool)  # owns the pool: aclose() closes it
        stack.push_async_callback(redis.aclose)
        await redis.ping()  # unreachable Redis: fail now, not at the first request or job
        inventory = Inventory(
            redis, pool, settings.redis_prefix, settings.recovery_log_length, settings.sweet_row
        )
        provider = await stack.enter_async_context(_open_provider(settings, pool))
        channels: Channels | None = None
        expiry: Expiry | None = None
        if role == "web":
            # The pub/sub connection without that retry: redis-py would reconnect it silently,
            # and Channels must see the drop to bring its viewers up to date (channels.py).
            listener = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=2)
            stack.push_async_callback(listener.aclose)
            channels = Channels(
                redis, inventory, queue_size=settings.ws_queue_size, heartbeat=settings.ws_heartbeat,
                listener=listener,
            )  # fmt: skip
            stack.push_async_callback(channels.stop)
            expiry = Expiry(
                redis, inventory, channels, hold_max=settings.hold_max, sweep_interval=settings.sweep_interval
            )
            stack.push_async_callback(expiry.stop)
        yield Runtime(
            settings=settings,
            role=role,
            pool=pool,
            redis=redis,
            holds=Holds(inventory, settings),
            checkout_holds=Holds(inventory, checkout_settings(settings)),
            provider=provider,
            channels=channels,
            expiry=expiry,
            state=ProcessState(),
        )


@contextlib.asynccontextmanager
async def _open_provider(settings: Settings, pool: Pool) -> AsyncIterator[PaymentProvider]:
    """The payment provider SEATMAP_PAYMENT_PROVIDER names; the composition root is where it is chosen."""
    name = settings.payment_provider
    if name != "simulated":
        raise ConfigError(f"unknown SEATMAP_PAYMENT_PROVIDER {name!r} (known: simulated)")
    from seatmap.simulated.provider import SimulatedGateway

    gateway = SimulatedGateway(pool, settings)
    try:
        yield gateway
    finally:
        await gateway.aclose()


def start_provider(rt: Runtime) -> None:
    """Start the provider's own background work: the simulated gateway's webhook pump.

    Apart from `open_runtime`, so that a runtime opened for a look at the databases (tests,
    tools) does not deliver webhooks behind the server's back.
    """
    from seatmap.simulated.provider import SimulatedGateway

    if isinstance(rt.provider, SimulatedGateway):
        rt.provider.start()


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel until each task has really ended.

    redis-py (8.1, Python 3.11) sometimes lets a command return normally in a cancelled task, so
    a loop around it would keep running and a single cancel() + await would hang the shutdown
    (Ctrl-C) forever.
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
