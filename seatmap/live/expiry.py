"""Restock of expired holds: keyspace notifications for speed, a sweeper for certainty.

When a hold's TTL key expires, Redis (with `notify-keyspace-events Ex`) says so on
`__keyevent@<db>__:expired`; every process hears it and runs the `restock` script, which
frees the seats only if the hold still exists, so one release is published however many
processes heard it (invariant 4). Notifications are fire-and-forget (a process that was
down, a Redis that expires lazily, a managed Redis that forbids CONFIG), so a sweeper runs
behind them: every `sweep_interval` seconds it looks up the expiry index of each screening
that may have holds and restocks whatever is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

from prometheus_client import Counter, Histogram
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from seatmap.live.channels import Channels
from seatmap.live.holds import ACTIVE_MARGIN_MS, active_key
from seatmap.live.inventory import Inventory, ttl_key_pattern
from seatmap.live.replies import Restocked

log = logging.getLogger("seatmap.live.expiry")

_BATCH: Final = 200

RESTOCKS: Final = Counter("seatmap_restocks", "Expired holds put back on sale (each hold once).")
RESTOCK_LAG: Final = Histogram(
    "seatmap_restock_lag_seconds",
    "Seconds from an expired hold's deadline to its seats being back on sale.",
    # A notification restocks within milliseconds; the sweeper within its interval (1 s by
    # default); beyond a minute something is wrong.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


class Expiry:
    def __init__(
        self, redis: Redis, inventory: Inventory, channels: Channels, *, hold_max: int, sweep_interval: float
    ) -> None:
        self.redis = redis
        self.inventory = inventory
        self.channels = channels
        self.hold_max_ms = hold_max * 1000
        self.sweep_interval = sweep_interval
        self._pattern = ttl_key_pattern(inventory.prefix)
        self._limit = asyncio.Semaphore(32)
        self._inflight: set[asyncio.Task[bool]] = set()
        self.restocked = 0

    async def listen(self) -> bool:
        """Subscribe to expiry notifications; False (with a warning) where the server won't send them."""
        try:
            config: Any = await self.redis.config_get("notify-keyspace-events")
            wanted = set(config.get("notify-keyspace-events") or "")
            if not ("E" in wanted and ("x" in wanted or "A" in wanted)):
                await self.redis.config_set("notify-keyspace-events", "".join(sorted(wanted | {"E", "x"})))
        except ResponseError as exc:
            log.warning(
                "cannot enable keyspace notifications (%s); expired holds are restocked by the sweeper only, "
                "within %.1fs of their expiry",
                exc,
                self.sweep_interval,
            )
            return False
        db = self.redis.connection_pool.connection_kwargs.get("db", 0)
        await self.channels.add_handler(f"__keyevent@{db}__:expired", self._on_expired)
        return True

    def _on_expired(self, key: str) -> None:
        match = self._pattern.match(key)
        if match is None:
            return
        task = asyncio.create_task(self.restock(int(match[1]), match[2]), name="expiry.restock")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def restock(self, screening: int, token: str) -> bool:
        """Free an expired hold's seats; True if this call was the one that did it.

        Only that call counts the restock and its lag, so the metrics count each hold once
        however many processes heard of its expiry.
        """
        async with self._limit:
            try:
                reply = await self.inventory.restock(screening, token)
            except RedisError as exc:
                log.warning("restock of %s failed (%s); the sweeper will retry", token, exc)
                return False
        if isinstance(reply, Restocked):
            self.restocked += 1
            RESTOCKS.inc()
            RESTOCK_LAG.observe(reply.lag_ms / 1000)
            return True
        return False

    async def sweep_once(self) -> int:
        now = int(time.time() * 1000)
        active = active_key(self.inventory.prefix)
        await self.redis.zremrangebyscore(active, "-inf", now - self.hold_max_ms - ACTIVE_MARGIN_MS)
        members: Any = await self.redis.zrange(active, 0, -1)
        screenings = [int(s) for s in members]
        if not screenings:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for screening in screenings:
                pipe.zrangebyscore(self.inventory.keys(screening).expiry, "-inf", now, start=0, num=_BATCH)
            due: list[list[str]] = await pipe.execute()
        done = 0
        for screening, tokens in zip(screenings, due, strict=True):
            for token in tokens:
                done += await self.restock(screening, token)
        return done

    async def sweep_forever(self) -> None:
        while True:
            try:
                restocked = await self.sweep_once()
                if restocked:
                    log.info("sweeper restocked %d expired hold(s)", restocked)
            except (RedisError, OSError) as exc:
                log.warning("sweep failed: %s", exc)
            await asyncio.sleep(self.sweep_interval)

    async def stop(self) -> None:
        for task in list(self._inflight):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
