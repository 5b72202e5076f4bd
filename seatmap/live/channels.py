"""Fan-out: one Redis pub/sub connection per process, one `Channel` per watched screening.

A process subscribes to a screening's channel when its first local viewer arrives and drops
it shortly after the last one leaves. Each delta arrives once per process, is decoded once
(to keep the channel's own copy of the seat map current) and its text, as the Lua script
wrote it, goes to every local socket through that socket's bounded queue. Nothing here ever
awaits a socket: a socket whose queue is full is reset to "send a fresh snapshot" instead
of growing memory (websockets' broadcast advice).

Ordering: deltas carry the screening's seq. A channel applies them strictly in order; a gap
(a message lost while the pub/sub connection was down, or published between our snapshot
and our subscription) is filled from the screening's recovery stream, or, when the stream no
longer reaches back, by a fresh snapshot for everyone. A once-a-second check of the
screening's seq (together with presence) catches a gap that no later delta would reveal.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from seatmap.live.backlog import Subscriber
from seatmap.live.inventory import Inventory, Keys, SeatMap
from seatmap.live.protocol import Delta, Heartbeat, Presence, Snapshot, Status, encoder

log = logging.getLogger("seatmap.live.channels")

_RING: Final = 512  # recent deltas kept per channel, to serve resumes without Redis
_LINGER: Final = 2.0  # seconds a channel stays subscribed after its last viewer leaves
_PRESENCE_FRESH_MS: Final = 5000

_incoming: Final = msgspec.json.Decoder(Delta | Status)


class Channel:
    """The live state of one screening in this process, and its local subscribers."""

    def __init__(self, screening: int, keys: Keys) -> None:
        self.screening = screening
        self.keys = keys
        self.subscribers: set[Subscriber] = set()
        self.seq = 0
        self.seats: dict[str, str] = {}
        self.ga: dict[str, int] = {}
        self.status = "scheduled"
        self.viewers = 0
        self.ready = asyncio.Event()
        self.ring: collections.deque[tuple[int, str]] = collections.deque(maxlen=_RING)
        self._pending: list[tuple[int, Delta | Status, str]] = []
        self._outbox: list[tuple[int, str]] = []  # applied, not yet handed to the subscribers
        self._catching_up = False
        self._snapshot: tuple[int, int, str] | None = None
        self.linger: asyncio.TimerHandle | None = None

    # -- state ---------------------------------------------------------------------------

    def load(self, seat_map: SeatMap) -> None:
        self.seq = seat_map.seq
        self.seats = dict(seat_map.seats)
        self.ga = dict(seat_map.ga)
        self.status = seat_map.status
        self.ring.clear()
        self._snapshot = None

    def snapshot_text(self) -> tuple[int, str]:
        """The encoded snapshot, encoded once per (seq, viewers) however many sockets join."""
        # Presence is summed across processes once a second; until then count at least ours.
        viewers = max(self.viewers, len(self.subscribers))
        cached = self._snapshot
        if cached is not None and cached[0] == self.seq and cached[1] == viewers:
            return self.seq, cached[2]
        message = Snapshot(
            screening=self.screening, seq=self.seq, seats=self.seats, ga=self.ga,
            viewers=viewers, status=self.status,
        )  # fmt: skip
        text = encoder.encode(message).decode()
        self._snapshot = (self.seq, viewers, text)
        return self.seq, text

    def _apply(self, message: Delta | Status, text: str) -> None:
        if isinstance(message, Delta):
            for change in message.changes:
                if change.seat is not None:
                    if change.state == "free":
                        self.seats.pop(change.seat, None)
                    elif change.state is not None:
                        self.seats[change.seat] = change.state
                elif change.area is not None and change.remaining is not None:
                    self.ga[change.area] = change.remaining
        else:
            self.status = message.status
        self.seq = message.seq
        self.ring.append((message.seq, text))
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self.deliver)
        self._outbox.append((message.seq, text))

    def deliver(self) -> None:
        """Hand the deltas applied in this loop turn to every local socket, in one go per socket.

        Per delta and socket this was the hottest line of a busy screening (100 holders on one
        map: 400,000 offers a second); per turn it is one extend per socket.
        """
        items, self._outbox = self._outbox, []
        if items:
            for sub in self.subscribers:
                sub.offer_many(items)

    def broadcast(self, text: str) -> None:
        """A message outside the seq order (presence, heartbeat): always delivered."""
        self.deliver()  # after the deltas already applied: a heartbeat's seq must not overtake them
        for sub in self.subscribers:
            sub.offer(0, text)

    def resync_all(self) -> None:
        for sub in self.subscribers:
            sub.reset()

    def replay_since(self, since: int) -> list[str] | None:
        """Deltas after `since` from memory, or None if the ring does not reach back."""
        if since >= self.seq:
            return []
        if not self.ring or self.ring[0][0] > since + 1:
            return None
        return [text for seq, text in self.ring if seq > since]


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
                    log.info("pub/sub reconnected; bringing %d channel(s) up to date", len(self.channels))
                    for channel in list(self.channels.values()):
                        self._spawn_catch_up(channel, None)
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

    # -- ordering ------------------------------------------------------------------------

    def _receive(self, channel: Channel, text: str) -> None:
        try:
            message = _incoming.decode(text)
        except msgspec.DecodeError:
            log.error("undecodable message on %s: %.200s", channel.keys.channel, text)
            return
        if not channel.ready.is_set() or channel._catching_up:
            channel._pending.append((message.seq, message, text))
            return
        if message.seq <= channel.seq:
            return
        if message.seq == channel.seq + 1:
            channel._apply(message, text)
            return
        channel._pending.append((message.seq, message, text))
        self._spawn_catch_up(channel, message.seq)

    def _spawn_catch_up(self, channel: Channel, seen: int | None) -> None:
        if channel._catching_up:
            return
        channel._catching_up = True
        self._spawn(self._catch_up(channel, seen), f"channels.catch_up.{channel.screening}")

    async def _catch_up(self, channel: Channel, seen: int | None) -> None:
        """Fill the gap after channel.seq from the recovery stream, else take a fresh snapshot."""
        try:
            entries = await self.inventory.log_after(channel.keys, channel.seq)
            if entries and entries[0][0] == channel.seq + 1:
                for seq, text in entries:
                    if seq == channel.seq + 1:
                        channel._apply(_incoming.decode(text), text)
            elif entries or (seen is not None and seen > channel.seq):
                channel.load(await self.inventory.snapshot(channel.screening))
                channel.resync_all()
        finally:
            channel._catching_up = False
        pending, channel._pending = channel._pending, []
        for seq, message, text in sorted(pending, key=lambda p: p[0]):
            if seq == channel.seq + 1:
                channel._apply(message, text)
            elif seq > channel.seq + 1:
                channel._pending.append((seq, message, text))
        if channel._pending:
            self._spawn_catch_up(channel, channel._pending[-1][0])

    # -- viewers -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(self, screening: int) -> AsyncIterator[Subscriber]:
        """Subscribe a local socket to a screening; the channel is ready (snapshot loaded) on entry."""
        channel = self.channels.get(screening)
        if channel is None:
            channel = Channel(screening, self.inventory.keys(screening))
            self.channels[screening] = channel
            self._by_name[channel.keys.channel] = channel
            try:
                await self._subscribe(channel.keys.channel)
                channel.load(await self.inventory.snapshot(screening))
            except BaseException:
                self._forget(channel)
                raise
            channel.ready.set()
            if channel._pending:
                self._spawn_catch_up(channel, None)
        else:
            if channel.linger is not None:
                channel.linger.cancel()
                channel.linger = None
            await channel.ready.wait()
        sub = Subscriber(channel, self.queue_size)
        channel.subscribers.add(sub)
        try:
            yield sub
        finally:
            channel.subscribers.discard(sub)
            if not channel.subscribers and self.channels.get(screening) is channel:
                loop = asyncio.get_running_loop()
                channel.linger = loop.call_later(_LINGER, self._drop, channel)

    def _drop(self, channel: Channel) -> None:
        if channel.subscribers or self.channels.get(channel.screening) is not channel:
            return
        self._forget(channel)
        self._spawn(self._unsubscribe(channel), f"channels.unsubscribe.{channel.screening}")

    def _forget(self, channel: Channel) -> None:
        self.channels.pop(channel.screening, None)
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
        """Once a second: presence across processes, seq check, heartbeats to quiet sockets."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._presence_round()
            except (RedisError, OSError) as exc:
                log.warning("presence round failed: %s", exc)

    async def _presence_round(self) -> None:
        channels = [c for c in self.channels.values() if c.ready.is_set()]
        if not channels:
            return
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.hset(channel.keys.viewers, self.process_id, f"{len(channel.subscribers)}:{now_ms}")
                pipe.hgetall(channel.keys.viewers)
                pipe.get(channel.keys.seq)
            results: list[Any] = await pipe.execute()
        heartbeat_before = time.monotonic() - self.heartbeat
        for i, channel in enumerate(channels):
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
            if total != channel.viewers:
                channel.viewers = total
                channel.broadcast(encoder.encode(Presence(viewers=total)).decode())
            raw_seq = results[3 * i + 2]
            if raw_seq is None:
                # Redis lost this screening (restart, flush): reload it, everyone resyncs.
                self._spawn_catch_up(channel, channel.seq + 1)
            elif int(raw_seq) > channel.seq:
                self._spawn_catch_up(channel, int(raw_seq))
            quiet = [sub for sub in channel.subscribers if sub.last_sent < heartbeat_before]
            if quiet:
                channel.deliver()  # the deltas up to channel.seq first
                text = encoder.encode(Heartbeat(seq=channel.seq)).decode()
                for sub in quiet:
                    sub.offer(0, text)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
