"""Restock of expired holds: the sweeper's index is the clock, keyspace notifications a fast path.

Every hold's deadline is in its screening's expiry index (a sorted set). The sweeper sleeps
until the earliest deadline of the screenings that may have holds (never longer than
`sweep_interval`, nor than a new hold's TTL, so a hold made meanwhile is in the index before its
deadline), then restocks every due hold of a screening in one script call and one delta
(`restock_due`). So a hold comes back on sale within milliseconds of its deadline whatever
Redis's own expiry does: Redis expires keys lazily and by sampling, and with thousands of TTL
keys its `expired` events came seconds late (issue 13).

When a hold's TTL key expires, Redis (with `notify-keyspace-events Ex`) also says so on
`__keyevent@<db>__:expired`; every process hears it and sweeps at once (a hold extended or made
elsewhere with other terms is then not left for the interval). The scripts free the seats only
if the hold still exists, so one release is published however many processes sweep (invariant
4). A Redis restarted with its default config has notifications off: the setting is checked
again every few seconds (`_NOTIFY_CHECK`) and after the pub/sub connection came back, and
re-applied; `/readyz` says so when it cannot be (a managed Redis that forbids CONFIG). The
sweeper covers either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

from prometheus_client import Counter, Histogram
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError, ResponseError

from seatmap.live.channels import Channels
from seatmap.live.holds import ACTIVE_MARGIN_MS, active_key
from seatmap.live.inventory import Inventory, ttl_key_pattern
from seatmap.live.replies import Restocked
from seatmap.runtime import RedisClient

log = logging.getLogger("seatmap.live.expiry")

_BATCH: Final = 200  # due holds per screening per script call
# Holds due within this much of each other are restocked by one wake-up (and one delta).
_GRANULE: Final = 0.01
# After a sweep, `expired` events wait this long before they wake the sweeper again: a burst of
# them (Redis expiring many keys at once) then costs a few sweeps, not one per event.
_EVENT_GAP: Final = 0.05
_NOTIFY_CHECK: Final = 5.0  # seconds between checks that Redis still sends expiry events

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
        self, redis: RedisClient, inventory: Inventory, channels: Channels, *, hold_max: int,
        sweep_interval: float, hold_ttl: float = 0,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.inventory = inventory
        self.channels = channels
        self.hold_max_ms = hold_max * 1000
        # Never asleep longer than a new hold lasts: a hold made just after the sweeper went to
        # sleep is then in the index before its deadline, so no hold waits for the interval.
        self.sweep_interval = min(sweep_interval, hold_ttl) if hold_ttl else sweep_interval
        self._pattern = ttl_key_pattern(inventory.prefix)
        self._limit = asyncio.Semaphore(32)
        # Set by an `expired` event: the sweeper wakes before its next known deadline.
        self._wake = asyncio.Event()
        self.restocked = 0
        self.listening = False
        # Why Redis does not send expiry events although we listen ("" while it does): /readyz.
        self.notifications_problem = ""
        self.notify_check = _NOTIFY_CHECK
        self._checked_at = 0.0
        self._reconnects_seen = 0
        self._checked_once = False

    async def listen(self) -> bool:
        """Subscribe to expiry notifications; False (with a warning) where the server won't send them."""
        self.listening = True
        # A cluster has only database 0, and each node reports only the keys it holds: so the
        # channel is listened to on every primary (`everywhere`), following failovers.
        db = (
            0
            if isinstance(self.redis, RedisCluster)
            else self.redis.connection_pool.connection_kwargs.get("db", 0)
        )
        await self.channels.add_handler(f"__keyevent@{db}__:expired", self._on_expired, everywhere=True)
        return await self.ensure_notifications()

    async def ensure_notifications(self) -> bool:
        """Make Redis send `expired` events (it forgets them on a restart with the default config);
        True if it does. Failing, the reason is kept for /readyz and said once in the log."""
        self._checked_at = time.monotonic()
        self._reconnects_seen = self.channels.reconnects
        try:
            if isinstance(self.redis, RedisCluster):
                # Every node, replicas too: a replica promoted by a failover sends them at once.
                for node in self.redis.get_nodes():
                    await self._ensure_on(node)
            else:
                await self._ensure_on(None)
        except ResponseError as exc:
            problem = f"cannot enable keyspace notifications: {exc}"
            if problem != self.notifications_problem:
                log.warning("%s; expired holds are restocked by the sweeper only, on its index", problem)
            self.notifications_problem = problem
            return False
        finally:
            self._checked_once = True
        if self.notifications_problem:
            log.info("keyspace notifications are on again")
        self.notifications_problem = ""
        return True

    async def _ensure_on(self, node: ClusterNode | None) -> None:
        """Turn `expired` events on (one node of a cluster, or the one Redis) unless they are."""
        target: dict[str, Any] = {} if node is None else {"target_nodes": node}
        config: Any = await self.redis.config_get("notify-keyspace-events", **target)
        wanted = set(config.get("notify-keyspace-events") or "")
        if not ("E" in wanted and ("x" in wanted or "A" in wanted)):
            await self.redis.config_set(
                "notify-keyspace-events", "".join(sorted(wanted | {"E", "x"})), **target
            )
            if self.notifications_problem == "" and self._checked_once:
                log.warning("Redis had keyspace notifications off (restarted?); turned them on again")

    async def _check_notifications(self) -> None:
        """Now and then, and after the pub/sub connection came back (Redis may have restarted)."""
        due = time.monotonic() - self._checked_at >= self.notify_check
        if self.listening and (due or self.channels.reconnects != self._reconnects_seen):
            await self.ensure_notifications()

    def _on_expired(self, key: str) -> None:
        """A hold's TTL key expired: sweep now. A burst of events (Redis expires by sampling,
        many keys at once) costs one batched sweep, not one script call per hold."""
        if self._pattern.match(key) is not None:
            self._wake.set()

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

    async def sweep_once(self) -> tuple[int, float]:
        """Restock every due hold, one script call per screening (all pipelined together); returns
        how many this call restocked and how many seconds until the next deadline it knows of
        (at most `sweep_interval`)."""
        now = int(time.time() * 1000)
        active = active_key(self.inventory.prefix)
        await self.redis.zremrangebyscore(active, "-inf", now - self.hold_max_ms - ACTIVE_MARGIN_MS)
        members: Any = await self.redis.zrange(active, 0, -1)
        screenings = [int(s) for s in members]
        if not screenings:
            return 0, self.sweep_interval
        async with self.redis.pipeline(transaction=False) as pipe:
            for screening in screenings:
                expiry = self.inventory.keys(screening).expiry
                pipe.zrangebyscore(expiry, "-inf", now, start=0, num=_BATCH)
                pipe.zrangebyscore(expiry, f"({now}", "+inf", start=0, num=1, withscores=True)
            found: list[Any] = await pipe.execute()
        wait = self.sweep_interval
        batches = []
        for i, screening in enumerate(screenings):
            due, upcoming = found[2 * i], found[2 * i + 1]
            if due:
                batches.append(self._restock_due(screening, due))
                if len(due) == _BATCH:
                    wait = 0.0  # more are due than one call takes
            if upcoming:
                wait = min(wait, max(0.0, (upcoming[0][1] - now) / 1000))
        done = 0
        for restocked, alive in await asyncio.gather(*batches):
            done += restocked
            if alive:  # a TTL key a millisecond from its end: look again very soon
                wait = min(wait, _GRANULE)
        return done, wait

    async def _restock_due(self, screening: int, tokens: list[str]) -> tuple[int, int]:
        try:
            reply = await self.inventory.restock_due(screening, tokens)
        except RedisError as exc:
            log.warning("restock of %d due hold(s) of screening %d failed (%s)", len(tokens), screening, exc)
            return 0, 0
        for lag_ms in reply.lags_ms:
            RESTOCK_LAG.observe(lag_ms / 1000)
        RESTOCKS.inc(len(reply.lags_ms))
        self.restocked += len(reply.lags_ms)
        return len(reply.lags_ms), reply.alive

    async def sweep_forever(self) -> None:
        """Sleep until the next deadline (bounded by the interval) or an `expired` event, restock, repeat."""
        while True:
            wait = self.sweep_interval
            self._wake.clear()  # an event from here on is for a hold this round may not see
            try:
                await self._check_notifications()
            except (RedisError, OSError) as exc:
                log.warning("keyspace notification check failed: %s", exc)
            try:
                restocked, wait = await self.sweep_once()
                if restocked:
                    log.debug("sweeper restocked %d expired hold(s)", restocked)
            except (RedisError, OSError) as exc:
                log.warning("sweep failed: %s", exc)
            # Holds due within one granule share a wake-up; a wake-up never comes early.
            delay = max(wait, 0.001) + (_GRANULE if wait > 0 else 0.0)
            gap = min(delay, _EVENT_GAP)
            await asyncio.sleep(gap)
            if delay > gap:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay - gap):
                        await self._wake.wait()

    async def stop(self) -> None:
        """Nothing of its own to end: the sweeper is a task of the lifespan."""
