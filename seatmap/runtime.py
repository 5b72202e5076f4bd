"""What every module is handed: the frozen `Runtime` of its process, and the part that changes.

`composition.open_runtime(settings, role)` builds one per process (web or worker) and yields
it; a field per thing the process holds open, typed. Everything that changes while the process
runs sits in one mutable `ProcessState`: which background tasks died, whether the process is
stopping, and two caches. A background task is handed to `ProcessState.watch`, so a crash is
told apart from a stop in one place.

The lifespan puts the `Runtime` in the lifespan state, from where Starlette copies it to every
request and WebSocket; `runtime(conn)` gets it back, typed. The domain types of its fields are
imported for type checking only: every domain imports this module, so it imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from starlette.requests import HTTPConnection

from seatmap.db import Pool
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
# One Redis, or a Redis Cluster (SEATMAP_REDIS_CLUSTER): the same commands, routed by key slot.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster


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
    # accounts/auth.py: users whose tokens were revoked lately, with when this process heard it.
    revoked_users: dict[int, float] = field(default_factory=dict)
    # sales/settlement.py: orders shown sold and not yet written down as such.
    published_orders: set[int] = field(default_factory=set)
    # sales/alerts.py: (screening, kind) alerts known to be sent, so later sales skip the check.
    alerted: set[tuple[int, str]] = field(default_factory=set)

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
    redis: RedisClient
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
