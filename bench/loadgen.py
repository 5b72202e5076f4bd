"""The load generator: one process of many viewer sockets, driven over a pipe by bench.live.

Each process runs its own event loop. A viewer checks what a seat map client relies on: it
sees every delta of a phase exactly once and in order, i.e. the seqs `start+1 .. end` with
nothing missing, nothing twice, nothing late. Latency is the receipt time minus the delta's
`ts` (the server's commit time, same machine clock), kept as a histogram of 0.1 ms buckets
so that millions of samples cost an array increment each.
"""

from __future__ import annotations

import array
import asyncio
import collections
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

import msgspec

from bench import holders, wire

BUCKET_MS: Final = 0.1
BUCKETS: Final = 600_000  # 60 s; anything later lands in the last bucket


class Envelope(msgspec.Struct):
    """The part of every server message a viewer needs (other fields are skipped unread)."""

    type: str
    seq: int = 0
    ts: float = 0.0
    messages: list[Envelope] = []  # a `batch` (seatmap with ?batch=1): several messages in one frame


envelope: Final = msgspec.json.Decoder(Envelope)


# ---- commands (bench.live -> here) and replies --------------------------------------------


@dataclass(frozen=True)
class Connect:
    host: str
    port: int
    path: str
    count: int
    client: str = "raw"  # "raw" (bench.wire) or "websockets" (the library's asyncio client)
    deflate: bool = False  # offer permessage-deflate, as browsers do
    concurrency: int = 64


@dataclass(frozen=True)
class Connected:
    opened: int
    failed: int
    errors: dict[str, int]


@dataclass(frozen=True)
class Start:
    """From now on, count deltas after `seq`."""

    seq: int


@dataclass(frozen=True)
class Finish:
    """The last delta of the phase is `seq`; wait (at most `timeout` s) until every viewer has it."""

    seq: int
    timeout: float


@dataclass
class Counts:
    viewers: int = 0
    delivered: int = 0
    lost: int = 0
    out_of_order: int = 0
    resyncs: int = 0
    closed: int = 0
    timed_out: bool = False
    last_receipt: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)
    close_codes: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Disconnect:
    pass


@dataclass(frozen=True)
class Stop:
    pass


# ---- counting ------------------------------------------------------------------------------


class Tally:
    """One phase's counts for every viewer of this process."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.end: int | None = None
        self.counts = Counts()
        self.histogram = array.array("I", bytes(4 * BUCKETS))
        self.remaining = 0
        self.done = asyncio.Event()


class Viewer:
    """One socket's view of the seq stream; `next` is the seq it must see next."""

    __slots__ = ("close", "closed_with", "finished", "gen", "next")

    def __init__(self, gen: LoadGenerator) -> None:
        self.gen = gen
        self.next = 0
        self.finished = False
        self.closed_with: int | None = None
        self.close: Callable[[], Awaitable[None]] = _nothing

    def text(self, payload: bytes, received: float) -> None:
        tally = self.gen.tally
        if tally is None:
            return
        message = envelope.decode(payload)
        if message.type == "batch":
            for inner in message.messages:
                self._one(tally, inner, received)
        else:
            self._one(tally, message, received)

    def _one(self, tally: Tally, message: Envelope, received: float) -> None:
        kind = message.type
        if kind == "delta" or kind == "status":
            seq = message.seq
            expected = self.next
            if seq < expected:
                if seq > tally.start:
                    tally.counts.out_of_order += 1
                return
            counts = tally.counts
            if seq > expected:
                counts.lost += seq - expected
            self.next = seq + 1
            counts.delivered += 1
            counts.last_receipt = received
            if kind == "delta":
                bucket = int((received * 1000.0 - message.ts) / BUCKET_MS)
                tally.histogram[min(max(bucket, 0), BUCKETS - 1)] += 1
        elif kind == "snapshot":
            # A resync (the server found this socket too slow): what it skipped is lost.
            tally.counts.resyncs += 1
            tally.counts.last_receipt = max(tally.counts.last_receipt, received)
            if message.seq >= self.next:
                tally.counts.lost += message.seq - self.next + 1
                self.next = message.seq + 1
        else:
            return
        if tally.end is not None and not self.finished and self.next > tally.end:
            self._finish(tally)

    def closed(self, code: int) -> None:
        self.closed_with = code
        tally = self.gen.tally
        if tally is not None:
            tally.counts.closed += 1
            if tally.end is not None and not self.finished:
                self._finish(tally)

    def _finish(self, tally: Tally) -> None:
        self.finished = True
        tally.remaining -= 1
        if tally.remaining <= 0:
            tally.done.set()


async def _nothing() -> None:
    pass


class LoadGenerator:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.viewers: list[Viewer] = []
        self.tally: Tally | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.holders = holders.HolderGroup()

    async def serve(self) -> None:
        handlers: dict[type, Callable[[Any], Awaitable[object]]] = {
            Connect: self.connect,
            Start: self.start,
            Finish: self.finish,
            Disconnect: self.disconnect,
            holders.Join: self.holders.join,
            holders.Run: self.holders.run,
            holders.Leave: self.holders.leave,
        }
        while True:
            command = await asyncio.to_thread(self.conn.recv)
            if isinstance(command, Stop):
                await self.disconnect(Disconnect())
                await self.holders.leave()
                return
            try:
                reply = await handlers[type(command)](command)
            except Exception:
                # bench.live raises it: a failure here must stop the run with its traceback.
                reply = RuntimeError(f"load generator failed on {command!r}:\n{traceback.format_exc()}")
            self.conn.send(reply)

    async def connect(self, command: Connect) -> Connected:
        limit = asyncio.Semaphore(command.concurrency)
        errors: collections.Counter[str] = collections.Counter()

        async def one() -> None:
            viewer = Viewer(self)
            async with limit:
                try:
                    if command.client == "websockets":
                        await self._library_socket(viewer, command)
                    else:
                        socket = await wire.connect(
                            command.host, command.port, command.path, viewer, command.deflate
                        )
                        viewer.close = socket.close
                except (OSError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    return
            self.viewers.append(viewer)

        await asyncio.gather(*(one() for _ in range(command.count)))
        return Connected(command.count - sum(errors.values()), sum(errors.values()), dict(errors))

    async def _library_socket(self, viewer: Viewer, command: Connect) -> None:
        """The same viewer on the `websockets` client (`--client websockets`), for cross-checks."""
        import websockets

        url = f"ws://{command.host}:{command.port}{command.path}"
        compression = "deflate" if command.deflate else None
        conn = await websockets.connect(url, compression=compression, open_timeout=30, max_queue=None)

        async def read() -> None:
            try:
                async for message in conn:
                    viewer.text(message.encode() if isinstance(message, str) else message, time.time())
            except websockets.ConnectionClosed:
                pass
            viewer.closed(conn.close_code or wire.ABNORMAL)

        task = asyncio.create_task(read())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        viewer.close = conn.close

    async def start(self, command: Start) -> bool:
        self.tally = Tally(command.seq)
        for viewer in self.viewers:
            viewer.next = command.seq + 1
            viewer.finished = False
        return True

    async def finish(self, command: Finish) -> Counts:
        tally = self.tally
        assert tally is not None
        tally.end = command.seq
        for viewer in self.viewers:
            viewer.finished = viewer.next > command.seq or viewer.closed_with is not None
        tally.remaining = sum(not v.finished for v in self.viewers)
        if tally.remaining:
            try:
                async with asyncio.timeout(command.timeout):
                    await tally.done.wait()
            except TimeoutError:
                tally.counts.timed_out = True
        self.tally = None
        counts = tally.counts
        counts.viewers = len(self.viewers)
        for viewer in self.viewers:
            if viewer.next <= command.seq:
                counts.lost += command.seq - viewer.next + 1
        codes = collections.Counter(v.closed_with for v in self.viewers if v.closed_with is not None)
        counts.close_codes = dict(codes)
        counts.histogram = {i: n for i, n in enumerate(tally.histogram) if n}
        return counts

    async def disconnect(self, command: Disconnect) -> int:
        viewers, self.viewers = self.viewers, []
        await asyncio.gather(*(v.close() for v in viewers))
        return len(viewers)


def main(conn: Connection) -> None:
    """The process entry point (multiprocessing, spawn)."""
    asyncio.run(LoadGenerator(conn).serve())
