"""Fan-out I/O: one Redis pub/sub connection per process, one `Channel` per watched screening.

A process subscribes to a screening's channel when its first local viewer arrives and drops
it shortly after the last one leaves. Each message arrives once per process and goes to the
screening's `Feed` (feed.py), which holds every rule: seq order, gaps, the recovery stream or a
snapshot, which socket is too slow. This module only carries out what the feed asks for (read
the stream, read a snapshot, hand the deltas over once per loop turn) and never awaits a socket.

A once-a-second round publishes this process's viewers, sums everyone's, and checks the
screening's seq, which catches a gap that no later delta would reveal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

import msgspec
from prometheus_client import Counter, Histogram
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from seatmap.live.connections import Connections
from seatmap.live.feed import Feed, Fetch, Watcher
from seatmap.live.inventory import Inventory, Keys

log = logging.getLogger("seatmap.live.channels")

_LINGER: Final = 2.0  # seconds a channel stays subscribed after its last viewer leaves
_PRESENCE_FRESH_MS: Final = 5000

FANOUT_LAG: Final = Histogram(
    "seatmap_fanout_lag_seconds",
    "From a delta's commit (its ts) to handing it to this process's sockets.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RESYNCS: Final = Counter(
    "seatmap_resyncs_total",
    "Sockets sent a fresh snapshot instead of the deltas they missed, by reason.",
    ["reason"],
)
PUBSUB_RECONNECTS: Final = Counter(
    "seatmap_pubsub_reconnects_total", "Times this process's pub/sub connection came back after a loss."
)


class Channel:
    """One watched screening in this process: its feed, and the I/O state around it."""

    __slots__ = ("feed", "flushing", "keys", "linger", "ready")

    def __init__(self, screening: int, keys: Keys) -> None:
        self.feed = Feed(screening)
        self.keys = keys
        self.ready = asyncio.Event()  # the first snapshot is loaded
        self.linger: asyncio.TimerHandle | None = None
        self.flushing = False  # a flush is scheduled for the end of this loop turn


class Channels:
    """The process's pub/sub connection and its channels. Started and stopped by the lifespan."""

    def __init__(
        self,
        redis: Redis,
        inventory: Inventory,
        *,
        queue_size: int,
        heartbeat: float,
        listener: Redis | None = None,
    ) -> None:
        self.redis = redis
        # The client the pub/sub connection comes from: one that does not reconnect behind our back.
        self.listener = listener or redis
        self.inventory = inventory
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self.process_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.channels: dict[int, Channel] = {}
        self._by_name: dict[str, Channel] = {}
        # Channels that are not screenings (keyspace notifications) and their handlers.
        self.handlers: dict[str, Callable[[str], None]] = {}
        self._control = f"{inventory.prefix}:proc:{self.process_id}"
        # Open sockets per client address across processes (SEATMAP_WS_MAX_PER_ADDRESS).
        self.connections = Connections(inventory.scripts, inventory.prefix, self.process_id)
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Short-lived tasks (catch-ups, unsubscribes): kept so stop() can end them cleanly.
        self._spawned: set[asyncio.Task[None]] = set()
        self.reconnects = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> list[asyncio.Task[None]]:
        self._tasks = [
            asyncio.create_task(self._listen(), name="channels.listen"),
            asyncio.create_task(self._tick(), name="channels.presence"),
        ]
        async with asyncio.timeout(10):
            await self._connected.wait()
        return self._tasks

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        for channel in self.channels.values():
            if channel.linger is not None:
                channel.linger.cancel()
        tasks = [*self._tasks, *self._spawned]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for channel in list(self.channels.values()):
            with contextlib.suppress(RedisError, OSError):
                await self.redis.hdel(channel.keys.viewers, self.process_id)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    async def _listen(self) -> None:
        backoff = 0.1
        first = True
        while True:
            pubsub = self.listener.pubsub(ignore_subscribe_messages=True)
            try:
                # The control channel keeps the connection subscribed even with no viewers.
                await pubsub.subscribe(self._control, *self.handlers, *self._by_name)
                self._pubsub = pubsub
                self._connected.set()
                if not first:
                    self.reconnects += 1
                    PUBSUB_RECONNECTS.inc()
                    log.info("pub/sub reconnected; bringing %d channel(s) up to date", len(self.channels))
                    for channel in list(self.channels.values()):
                        channel.feed.receive_reconnect()
                        self._carry_out(channel)
                first = False
                backoff = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
            except (RedisConnectionError, OSError, TimeoutError) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting in %.1fs", exc, backoff)
            finally:
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _dispatch(self, name: str, data: str) -> None:
        channel = self._by_name.get(name)
        if channel is not None:
            self._receive(channel, data)
            return
        handler = self.handlers.get(name)
        if handler is not None:
            handler(data)

    # -- what the feed asks for ----------------------------------------------------------

    def _receive(self, channel: Channel, text: str) -> None:
        try:
            channel.feed.receive_message(text)
        except msgspec.DecodeError:
            log.error("undecodable message on %s: %.200s", channel.keys.channel, text)
            return
        self._carry_out(channel)

    def _carry_out(self, channel: Channel) -> None:
        """After an event: schedule the flush and start the read the feed needs, if any."""
        feed = channel.feed
        if not channel.flushing and feed.flush_due():
            channel.flushing = True
            asyncio.get_running_loop().call_soon(self.deliver, channel)
        fetch = feed.fetch_to_do()
        if fetch is not None:
            self._spawn(self._fetch(channel, fetch), f"channels.catch_up.{feed.screening}")

    def deliver(self, channel: Channel) -> None:
        """Hand the deltas applied in this loop turn to every local socket, in one go per socket."""
        channel.flushing = False
        stamps = channel.feed.flush()
        if stamps:
            now_ms = time.time() * 1000
            for ts in stamps:
                FANOUT_LAG.observe(max(0.0, now_ms - ts) / 1000)
        self._count_resyncs(channel.feed)

    @staticmethod
    def _count_resyncs(feed: Feed) -> None:
        for reason, n in feed.resyncs_to_count().items():
            RESYNCS.labels(reason).inc(n)

    async def _fetch(self, channel: Channel, fetch: Fetch | None) -> None:
        """Carry out the feed's reads (the stream after its seq, else a snapshot) until it is content."""
        feed = channel.feed
        try:
            while fetch is not None:
                if fetch.after is None:
                    seat_map = await self.inventory.snapshot(feed.screening)
                    feed.receive_snapshot(seat_map.seq, seat_map.seats, seat_map.ga, seat_map.status)
                else:
                    feed.receive_entries(await self.inventory.log_after(channel.keys, fetch.after))
                self.deliver(channel)
                fetch = feed.fetch_to_do()
        except BaseException:
            feed.receive_fetch_failure()  # the next seq check asks again
            raise

    async def log_after(self, screening: int, seq: int) -> list[tuple[int, str]]:
        """The recovery stream after `seq`: for a resuming socket when the feed's memory is too short."""
        return await self.inventory.log_after(self.inventory.keys(screening), seq)

    # -- viewers -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(self, screening: int, *, batching: bool = False) -> AsyncIterator[tuple[Feed, Watcher]]:
        """Add a local socket to a screening's feed; the feed has its snapshot loaded on entry."""
        channel = self.channels.get(screening)
        if channel is None:
            channel = Channel(screening, self.inventory.keys(screening))
            self.channels[screening] = channel
            self._by_name[channel.keys.channel] = channel
            try:
                await self._subscribe(channel.keys.channel)
                seat_map = await self.inventory.snapshot(screening)
            except BaseException:
                self._forget(channel)
                raise
            channel.feed.receive_snapshot(seat_map.seq, seat_map.seats, seat_map.ga, seat_map.status)
            channel.ready.set()
            self._carry_out(channel)
        else:
            if channel.linger is not None:
                channel.linger.cancel()
                channel.linger = None
            await channel.ready.wait()
        feed = channel.feed
        watcher = Watcher(self.queue_size, batching=batching, now=time.monotonic())
        feed.watchers.add(watcher)
        try:
            yield feed, watcher
        finally:
            feed.watchers.discard(watcher)
            if not feed.watchers and self.channels.get(screening) is channel:
                loop = asyncio.get_running_loop()
                channel.linger = loop.call_later(_LINGER, self._drop, channel)

    def _drop(self, channel: Channel) -> None:
        screening = channel.feed.screening
        if channel.feed.watchers or self.channels.get(screening) is not channel:
            return
        self._forget(channel)
        self._spawn(self._unsubscribe(channel), f"channels.unsubscribe.{screening}")

    def _forget(self, channel: Channel) -> None:
        self.channels.pop(channel.feed.screening, None)
        self._by_name.pop(channel.keys.channel, None)

    async def _subscribe(self, name: str) -> None:
        # If the connection is down, the reconnect loop subscribes every known channel.
        if self._pubsub is not None:
            with contextlib.suppress(RedisConnectionError, OSError):
                await self._pubsub.subscribe(name)

    async def _unsubscribe(self, channel: Channel) -> None:
        if self._pubsub is not None and channel.keys.channel not in self._by_name:
            with contextlib.suppress(RedisConnectionError, OSError):
                await self._pubsub.unsubscribe(channel.keys.channel)
        await self.redis.hdel(channel.keys.viewers, self.process_id)

    async def add_handler(self, name: str, handler: Callable[[str], None]) -> None:
        self.handlers[name] = handler
        await self._subscribe(name)

    async def _tick(self) -> None:
        """Once a second: presence across processes, seq check, heartbeats to quiet sockets, and
        this process's socket counts per address (so that they stay fresh while it lives)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._presence_round()
            except (RedisError, OSError) as exc:
                log.warning("presence round failed: %s", exc)
            try:
                await self.connections.refresh()
            except (RedisError, OSError) as exc:
                log.warning("socket counts not refreshed: %s", exc)

    async def _presence_round(self) -> None:
        channels = [c for c in self.channels.values() if c.ready.is_set()]
        if not channels:
            return
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.hset(channel.keys.viewers, self.process_id, f"{len(channel.feed.watchers)}:{now_ms}")
                pipe.hgetall(channel.keys.viewers)
                pipe.get(channel.keys.seq)
            results: list[Any] = await pipe.execute()
        heartbeat_before = time.monotonic() - self.heartbeat
        for i, channel in enumerate(channels):
            feed = channel.feed
            everyone: dict[str, str] = results[3 * i + 1]
            total, stale = 0, []
            for process, value in everyone.items():
                count, _, stamp = value.partition(":")
                if now_ms - int(stamp or 0) > _PRESENCE_FRESH_MS:
                    stale.append(process)
                else:
                    total += int(count)
            if stale:
                await self.redis.hdel(channel.keys.viewers, *stale)
            self.deliver(channel)  # the deltas applied so far go before presence and heartbeats
            feed.receive_viewers(total)
            raw_seq = results[3 * i + 2]
            feed.receive_seq(None if raw_seq is None else int(raw_seq))
            feed.heartbeat(heartbeat_before)
            self._count_resyncs(feed)
            self._carry_out(channel)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
