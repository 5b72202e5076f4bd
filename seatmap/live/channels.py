"""Fan-out I/O: one pub/sub connection per process (per primary on a cluster), a `Channel` per screening.

A process subscribes to a screening's channel when its first local viewer arrives and drops
it shortly after the last one leaves. Each message arrives once per process and goes to the
screening's `Feed` (feed.py), which holds every rule: seq order, gaps, the recovery stream or a
snapshot, which socket is too slow. This module only carries out what the feed asks for (read
the stream, read a snapshot, hand the deltas over once per loop turn) and never awaits a socket.

A once-a-second round publishes this process's viewers, sums everyone's, and checks the
screening's seq, which catches a gap that no later delta would reveal.

**Shards.** On one Redis there is one `Shard`: a plain pub/sub connection, SUBSCRIBE. On a Redis
Cluster (SEATMAP_REDIS_CLUSTER) there is one `Shard` per primary, each its own connection to that
node, and a screening's channel (it carries the screening's hash tag) is SSUBSCRIBEd on the shard
that owns its slot, where the scripts SPUBLISH it: one sharded subscription per shard, however
many screenings it carries, and publishing costs one shard, not the whole cluster. Handlers
added `everywhere` (keyspace notifications, which are node-local) are subscribed on every shard.
A shard whose connection drops (a primary died), or whose server pushes `sunsubscribe` (its slot
moved), asks `_follow_topology` to refresh the slot map: channels are moved to their slot's
owner, shards are opened for new primaries and closed for old ones, and every moved or
reconnected channel's feed is told to catch up (`receive_reconnect`: the stream after its seq, or
a snapshot), after its new subscription is in place, so nothing published meanwhile is missed.
redis-py's own `ClusterPubSub` migrates channels too, but silently: the viewers would then wait
for the next seq check to hear of what they missed.
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
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError, ResponseError

from seatmap.live.connections import Connections
from seatmap.live.feed import Feed, Fetch, Watcher
from seatmap.live.inventory import Inventory, Keys
from seatmap.runtime import RedisClient

log = logging.getLogger("seatmap.live.channels")

_LINGER: Final = 2.0  # seconds a channel stays subscribed after its last viewer leaves
_TOPOLOGY_CHECK: Final = 5.0  # seconds between slot-map checks on a cluster (a reshard says nothing)
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


class Shard:
    """One pub/sub connection: to the one Redis, or to one primary of a cluster (`sharded`)."""

    def __init__(self, name: str, client: aioredis.Redis, *, sharded: bool, owned: bool) -> None:
        self.name = name
        self.client = client
        self.sharded = sharded  # SSUBSCRIBE/smessage here, rather than SUBSCRIBE/message
        self.owned = owned  # its client was opened here (a cluster node), so closed here
        self.names: set[str] = set()  # screening channels and sharded handlers placed here
        self.pubsub: PubSub | None = None
        self.connected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.retired = False


class Channels:
    """The process's pub/sub connections and its channels. Started and stopped by the lifespan."""

    def __init__(
        self,
        redis: RedisClient,
        inventory: Inventory,
        *,
        queue_size: int,
        heartbeat: float,
        listener: aioredis.Redis | None = None,
    ) -> None:
        self.redis = redis
        # On one Redis, the client the pub/sub connection comes from: one that does not reconnect
        # behind our back. On a cluster each primary's shard opens its own (`_node_client`).
        self.cluster = redis if isinstance(redis, RedisCluster) else None
        if self.cluster is None:
            assert listener is not None or isinstance(redis, aioredis.Redis)
            self.listener: aioredis.Redis | None = listener or (
                redis if isinstance(redis, aioredis.Redis) else None
            )
        else:
            self.listener = None
        self.inventory = inventory
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self.process_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.channels: dict[int, Channel] = {}
        self._by_name: dict[str, Channel] = {}
        # Channels that are not screenings and their handlers; `_everywhere` of them are
        # subscribed on every shard (keyspace notifications: node-local on a cluster).
        self.handlers: dict[str, Callable[[str], None]] = {}
        self._everywhere: set[str] = set()
        self.shards: dict[str, Shard] = {}
        self._placed: dict[str, Shard] = {}  # channel name -> the shard it is subscribed on
        self._topology = asyncio.Event()  # a shard saw the slot map change: refresh it
        self._control = f"{inventory.prefix}:proc:{self.process_id}"
        # Open sockets per client address across processes (SEATMAP_WS_MAX_PER_ADDRESS).
        self.connections = Connections(inventory.scripts, inventory.prefix, self.process_id)
        self._tasks: list[asyncio.Task[None]] = []
        # Short-lived tasks (catch-ups, unsubscribes): kept so stop() can end them cleanly.
        self._spawned: set[asyncio.Task[None]] = set()
        self.reconnects = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> list[asyncio.Task[None]]:
        self._tasks = [asyncio.create_task(self._tick(), name="channels.presence")]
        if self.cluster is None:
            assert self.listener is not None
            shard = self._open_shard("redis", self.listener, sharded=False, owned=False)
        else:
            await self.cluster.initialize()
            for node in self.cluster.get_primaries():
                shard = self._open_shard(
                    node.name, self._node_client(node.host, int(node.port)), sharded=True, owned=True
                )
            self._tasks.append(asyncio.create_task(self._follow_topology(), name="channels.topology"))
        async with asyncio.timeout(10):
            for shard in list(self.shards.values()):
                await shard.connected.wait()
        return self._tasks

    def _node_client(self, host: str, port: int) -> aioredis.Redis:
        """A plain client of one cluster node for its pub/sub connection: no read timeout (a
        quiet channel is not a dead one) and no silent reconnect (a drop must be seen)."""
        assert self.cluster is not None
        kw = self.cluster.get_connection_kwargs()
        pool = aioredis.ConnectionPool(
            connection_class=kw.get("connection_class") or Connection, host=host, port=port,
            username=kw.get("username"), password=kw.get("password"), decode_responses=True,
            max_connections=2, socket_connect_timeout=5, socket_keepalive=True,
        )  # fmt: skip
        return aioredis.Redis.from_pool(pool)

    def _open_shard(self, name: str, client: aioredis.Redis, *, sharded: bool, owned: bool) -> Shard:
        shard = Shard(name, client, sharded=sharded, owned=owned)
        self.shards[name] = shard
        shard.task = asyncio.create_task(self._listen(shard), name=f"channels.listen.{name}")
        self._tasks.append(shard.task)
        return shard

    async def _close_shard(self, shard: Shard) -> None:
        shard.retired = True
        self.shards.pop(shard.name, None)
        if shard.task is not None:
            shard.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shard.task
            if shard.task in self._tasks:
                self._tasks.remove(shard.task)
        if shard.owned:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await shard.client.aclose()

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
        for shard in list(self.shards.values()):
            if shard.owned:
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await shard.client.aclose()
        self.shards.clear()

    async def _listen(self, shard: Shard) -> None:
        backoff = 0.1
        first = True
        while not shard.retired:
            pubsub = shard.client.pubsub()
            try:
                # The control channel keeps the connection subscribed even with no viewers.
                classic = [self._control, *self._everywhere]
                placed = list(shard.names)
                if not shard.sharded:
                    classic += [n for n in self.handlers if n not in self._everywhere]
                await pubsub.subscribe(*classic)
                if shard.sharded:
                    # One SSUBSCRIBE per channel: a cluster refuses one naming several slots.
                    for name in placed:
                        await pubsub.ssubscribe(name)
                elif placed:
                    await pubsub.subscribe(*placed)
                shard.pubsub = pubsub
                shard.connected.set()
                if not first:
                    self.reconnects += 1
                    PUBSUB_RECONNECTS.inc()
                    log.info("pub/sub %s reconnected; bringing its channel(s) up to date", shard.name)
                    self._catch_up(placed)
                first = False
                backoff = 0.1
                async for message in pubsub.listen():
                    kind = message["type"]
                    if kind in ("message", "smessage"):
                        self._dispatch(message["channel"], message["data"])
                    elif kind == "sunsubscribe" and self._placed.get(message["channel"]) is shard:
                        # Pushed by the server: the channel's slot is no longer served here.
                        log.info("pub/sub %s dropped %s (slot moved)", shard.name, message["channel"])
                        self._topology.set()
            except (RedisConnectionError, OSError, TimeoutError) as exc:
                log.warning(
                    "pub/sub %s connection lost (%s); reconnecting in %.1fs", shard.name, exc, backoff
                )
                self._topology.set()  # a primary may have died: where do its slots live now?
            except ResponseError as exc:
                # MOVED (a channel placed here whose slot lives elsewhere now): subscribe again
                # from scratch once the slot map is refreshed; its viewers catch up then.
                log.warning("pub/sub %s: %s; resubscribing in %.1fs", shard.name, exc, backoff)
                self._topology.set()
            finally:
                shard.pubsub = None
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _catch_up(self, names: list[str]) -> None:
        """These channels may have missed messages: each feed reads the stream after its seq."""
        for name in names:
            channel = self._by_name.get(name)
            if channel is not None and channel.ready.is_set():
                channel.feed.receive_reconnect()
                self._carry_out(channel)

    # -- the cluster's slot map ----------------------------------------------------------

    async def _follow_topology(self) -> None:
        """On a cluster: keep one shard per primary and each channel on its slot's owner."""
        assert self.cluster is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TOPOLOGY_CHECK):
                    await self._topology.wait()
            self._topology.clear()
            try:
                await self.cluster.nodes_manager.initialize()
                await self._rebalance()
            except (RedisError, OSError) as exc:
                log.warning("cluster slot map not refreshed (%s); trying again", exc)
                await asyncio.sleep(0.2)
                self._topology.set()

    async def _rebalance(self) -> None:
        assert self.cluster is not None
        primaries = {node.name: node for node in self.cluster.get_primaries()}
        for name, node in primaries.items():
            if name not in self.shards:
                log.info("pub/sub: new primary %s", name)
                self._open_shard(name, self._node_client(node.host, int(node.port)), sharded=True, owned=True)
        for name in list(self._placed):
            owner = self.cluster.get_node_from_key(name)
            if owner is not None and self._placed[name].name != owner.name and owner.name in self.shards:
                await self._move(name, self.shards[owner.name])
        for shard in [s for s in self.shards.values() if s.name not in primaries and not s.names]:
            log.info("pub/sub: %s is no longer a primary", shard.name)
            await self._close_shard(shard)

    async def _move(self, name: str, to: Shard) -> None:
        """Subscribe `name` where its slot lives now, then catch its viewers up. Nothing is sent
        to the old owner: it dropped the subscription itself when the slot left (its
        `sunsubscribe` push) or it is gone, and a SUNSUBSCRIBE there would be answered MOVED."""
        old = self._placed[name]
        old.names.discard(name)
        if old.pubsub is not None:
            old.pubsub.shard_channels.pop(name, None)
        await self._place(name, to)
        self._catch_up([name])

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

    def _shard_for(self, name: str) -> Shard:
        if self.cluster is None:
            return next(iter(self.shards.values()))
        node = self.cluster.get_node_from_key(name)
        shard = self.shards.get(node.name) if node is not None else None
        if shard is None:  # a primary we have no shard for yet: any shard until the map is refreshed
            self._topology.set()
            shard = next(iter(self.shards.values()))
        return shard

    async def _subscribe(self, name: str) -> None:
        await self._place(name, self._shard_for(name))

    async def _place(self, name: str, shard: Shard) -> None:
        # If the shard's connection is down, its reconnect loop subscribes every name placed on it.
        self._placed[name] = shard
        shard.names.add(name)
        if shard.pubsub is not None:
            with contextlib.suppress(RedisConnectionError, OSError):
                if shard.sharded:
                    await shard.pubsub.ssubscribe(name)
                else:
                    await shard.pubsub.subscribe(name)

    async def _unsubscribe(self, channel: Channel) -> None:
        name = channel.keys.channel
        shard = self._placed.get(name)
        if shard is not None and name not in self._by_name:
            del self._placed[name]
            shard.names.discard(name)
            if shard.pubsub is not None:
                with contextlib.suppress(RedisConnectionError, OSError):
                    if shard.sharded:
                        await shard.pubsub.sunsubscribe(name)
                    else:
                        await shard.pubsub.unsubscribe(name)
        await self.redis.hdel(channel.keys.viewers, self.process_id)

    async def add_handler(
        self, name: str, handler: Callable[[str], None], *, everywhere: bool = False
    ) -> None:
        """Hand every message of `name` to `handler`. On a cluster, `name` is a sharded channel on
        its slot's shard (publish it with SPUBLISH), unless `everywhere`: then a classic channel
        on every primary, for what each node says of itself (keyspace notifications)."""
        self.handlers[name] = handler
        if everywhere or self.cluster is None:
            if everywhere:
                self._everywhere.add(name)
            for shard in self.shards.values():
                if shard.pubsub is not None:
                    with contextlib.suppress(RedisConnectionError, OSError):
                        await shard.pubsub.subscribe(name)
        else:
            await self._subscribe(name)

    def subscriptions(self) -> dict[str, int]:
        """How many channels each shard's connection carries (one connection per shard)."""
        return {name: len(shard.names) for name, shard in self.shards.items()}

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
        asked_at = [channel.feed.seq for channel in channels]
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
            feed.receive_seq(None if raw_seq is None else int(raw_seq), asked_at[i])
            feed.heartbeat(heartbeat_before)
            self._count_resyncs(feed)
            self._carry_out(channel)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
