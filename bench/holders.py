"""Holding clients: many logged-in sockets that hold and release seats as fast as they are answered.

Each holder authenticates with `{"type":"auth","token":...}`, then loops: hold 1..k random
seats (with a `ref`), and when that succeeds, release them. Double holds are looked for in
three independent ways, so that none of them has to be trusted alone:

1. overlap: a hold is certainly live from the moment its `result` arrives until its
   `release` is sent; two such intervals on one seat, from different holders, overlap only
   if the server let two clients hold that seat at once (one machine, one monotonic clock);
2. replay: one holder per screening and process replays the delta stream in seq order from
   its snapshot: a seat turning `held` that is not free, or `free` that is not held, is a
   violation;
3. final state: the holders stop while holding, and the seats hash in Redis must be exactly
   the union of the holds they believe they have (checked by bench.live).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from bench import wire
from bench.stage import adjacent

_COMMAND_TIMEOUT: Final = 30.0


class _Head(msgspec.Struct):
    type: str
    ref: str | None = None


class _Batch(msgspec.Struct):
    messages: list[msgspec.Raw]


class _HoldInfo(msgspec.Struct):
    token: str
    seats: list[str]


class _Reply(msgspec.Struct):
    type: str
    ref: str | None = None
    code: str | None = None
    hold: _HoldInfo | None = None
    retry_after: float | None = None


class _Change(msgspec.Struct):
    seat: str | None = None
    state: str | None = None


class _Delta(msgspec.Struct):
    seq: int
    changes: list[_Change]


class _Snapshot(msgspec.Struct):
    seq: int
    seats: dict[str, str]


_head: Final = msgspec.json.Decoder(_Head)
_batch: Final = msgspec.json.Decoder(_Batch)
_BATCH_PREFIX: Final = b'{"type":"batch",'
_reply: Final = msgspec.json.Decoder(_Reply)
_delta: Final = msgspec.json.Decoder(_Delta)
_snapshot: Final = msgspec.json.Decoder(_Snapshot)
_encode: Final = msgspec.json.Encoder().encode


# ---- commands (bench.live -> loadgen) and replies ------------------------------------------


@dataclass(frozen=True)
class Join:
    """Open one socket per (screening, access token) and authenticate it."""

    host: str
    port: int
    holders: list[tuple[int, str]]
    batch: bool = True  # ?batch=1, as the web UI asks


@dataclass(frozen=True)
class Run:
    rows: list[list[str]]
    max_seats: int
    start_at: float  # wall clock; every process starts together
    duration: float
    seed: int


@dataclass(frozen=True)
class Leave:
    """Close every holder's socket."""


@dataclass
class Replayed:
    deltas: int = 0
    doubles: int = 0
    bad_frees: int = 0
    gaps: int = 0
    snapshots: int = 0


@dataclass
class HoldCounts:
    holders: int = 0
    ok: int = 0
    taken: int = 0
    released: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0
    round_trips: list[float] = field(default_factory=list)  # seconds, hold command -> result
    # (screening, seats, certainly live from, certainly live until) per released hold
    intervals: list[tuple[int, tuple[str, ...], float, float]] = field(default_factory=list)
    # (screening, token, seats) held when the run ended
    live: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)
    replayed: Replayed = field(default_factory=Replayed)
    close_codes: dict[int, int] = field(default_factory=dict)


# ---- one holder ---------------------------------------------------------------------------


class Replay:
    """Seat states of one screening, rebuilt from its snapshot and deltas in seq order."""

    def __init__(self, counts: Replayed) -> None:
        self.counts = counts
        self.seq: int | None = None
        self.seats: dict[str, str] = {}

    def feed(self, kind: str, payload: bytes) -> None:
        if kind == "snapshot":
            snap = _snapshot.decode(payload)
            self.counts.snapshots += 1
            self.seq, self.seats = snap.seq, dict(snap.seats)
            return
        if self.seq is None:
            return
        delta = _delta.decode(payload)
        if delta.seq <= self.seq:
            return
        if delta.seq != self.seq + 1:
            # Cannot check across a gap: wait for the next snapshot.
            self.counts.gaps += 1
            self.seq = None
            return
        self.seq = delta.seq
        self.counts.deltas += 1
        for change in delta.changes:
            if change.seat is None:
                continue
            if change.state == "held":
                if change.seat in self.seats:
                    self.counts.doubles += 1
                self.seats[change.seat] = "held"
            elif change.state == "free":
                if self.seats.pop(change.seat, None) is None:
                    self.counts.bad_frees += 1


class Holder:
    def __init__(self, screening: int, token: str, replay: Replay | None) -> None:
        self.screening = screening
        self.token = token
        self.replay = replay
        self.socket: wire.Socket | None = None
        self.pending: dict[str, asyncio.Future[tuple[_Reply, float]]] = {}
        self.refs = 0
        self.closed_with: int | None = None

    def text(self, payload: bytes, received: float) -> None:
        if self.replay is None and payload.startswith(_BATCH_PREFIX):
            return  # seat-map messages only (never a result): nothing for a holder that does not replay
        head = _head.decode(payload)
        if head.type in ("result", "error", "pong"):
            # Errors the server cannot tie to a command (rate limit, undecodable) carry no ref;
            # a holder has one command in flight, so such an error answers that one.
            ref = head.ref if head.ref is not None else next(iter(self.pending), "")
            future = self.pending.pop(ref, None)
            if future is not None and not future.done():
                future.set_result((_reply.decode(payload), time.monotonic()))
        elif self.replay is not None and head.type in ("delta", "snapshot"):
            self.replay.feed(head.type, payload)
        elif head.type == "batch":
            for raw in _batch.decode(payload).messages:
                self.text(bytes(raw), received)

    def closed(self, code: int) -> None:
        self.closed_with = code
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"socket closed ({code})"))

    async def command(self, **message: Any) -> tuple[_Reply, float]:
        assert self.socket is not None
        self.refs += 1
        ref = str(self.refs)
        future: asyncio.Future[tuple[_Reply, float]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        self.socket.send_text(_encode({**message, "ref": ref}))
        async with asyncio.timeout(_COMMAND_TIMEOUT):
            return await future

    async def loop(self, run: Run, rng: random.Random, counts: HoldCounts) -> None:
        errors: collections.Counter[str] = collections.Counter()
        deadline = run.start_at + run.duration
        while time.time() < deadline:
            seats = adjacent(rng, run.rows, rng.randint(1, run.max_seats))
            sent = time.monotonic()
            reply, arrived = await self.command(type="hold", seats=seats)
            counts.round_trips.append(arrived - sent)
            if reply.type == "result" and reply.hold is not None:
                counts.ok += 1
                token, held = reply.hold.token, tuple(reply.hold.seats)
                if time.time() >= deadline:
                    counts.live.append((self.screening, token, held))
                    break
                releasing = time.monotonic()
                answer, _ = await self.command(type="release", token=token)
                if answer.type == "result":
                    counts.released += 1
                    counts.intervals.append((self.screening, held, arrived, releasing))
                else:
                    errors[f"release:{answer.code}"] += 1
                    counts.live.append((self.screening, token, held))
                    break
            elif reply.code == "seat_taken":
                counts.taken += 1
            else:
                errors[str(reply.code or reply.type)] += 1
                if reply.retry_after:
                    await asyncio.sleep(reply.retry_after)
        for code, n in errors.items():
            counts.errors[code] = counts.errors.get(code, 0) + n


class HolderGroup:
    """This process's holders (the load generator's second job)."""

    def __init__(self) -> None:
        self.holders: list[Holder] = []
        self.replayed = Replayed()

    async def join(self, command: Join) -> int:
        replays: dict[int, Replay] = {}
        for screening, token in command.holders:
            replay = None
            if screening not in replays:
                replay = replays[screening] = Replay(self.replayed)
            holder = Holder(screening, token, replay)
            path = f"/ws/screenings/{screening}?batch=1" if command.batch else f"/ws/screenings/{screening}"
            holder.socket = await wire.connect(command.host, command.port, path, holder)
            reply, _ = await holder.command(type="auth", token=token)
            if reply.type != "result":
                raise RuntimeError(f"auth refused: {reply.code}")
            self.holders.append(holder)
        return len(self.holders)

    async def run(self, command: Run) -> HoldCounts:
        counts = HoldCounts(holders=len(self.holders))
        await asyncio.sleep(max(0.0, command.start_at - time.time()))
        counts.started = time.time()
        tasks = [
            holder.loop(command, random.Random(f"{command.seed}:{i}:{holder.token}"), counts)
            for i, holder in enumerate(self.holders)
        ]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        counts.ended = time.time()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                name = type(outcome).__name__
                counts.errors[name] = counts.errors.get(name, 0) + 1
        counts.replayed = self.replayed
        counts.close_codes = dict(
            collections.Counter(h.closed_with for h in self.holders if h.closed_with is not None)
        )
        return counts

    async def leave(self, command: Leave | None = None) -> int:
        holders, self.holders = self.holders, []
        self.replayed = Replayed()
        await asyncio.gather(*(h.socket.close() for h in holders if h.socket is not None))
        return len(holders)
