"""The live feed of one screening in one process: every rule of the fan-out, and no I/O (Sans-I/O).

Like python-websockets' `protocol.py`, this module never awaits, never touches Redis or a socket
and never reads a clock: the I/O layers feed it what happened and carry out what it decides.
`channels.py` (pub/sub) and `socket.py` (WebSocket) are those layers; the rules are tested
directly, as tables of events, in `tests/live/test_feed.py`.

A `Feed` is one screening's map as this process knows it; a `Watcher` is one local socket's
bounded backlog and what that socket has seen. The contract, for the I/O layer:

Events in (`receive_*`, each returns nothing):
    `receive_snapshot(...)`   a snapshot read from Redis (the first one, or one `fetch_to_do` asked for)
    `receive_message(text)`   a message from the screening's pub/sub channel, as published
    `receive_entries(list)`   the recovery-stream entries `fetch_to_do` asked for
    `receive_seq(seq)`        the screening's seq as Redis has it now (None: Redis lost it)
    `receive_viewers(n)`      the viewers counted across processes
    `receive_reconnect()`     the pub/sub connection came back: messages may have been lost
    `receive_fetch_failure()` the read `fetch_to_do` asked for failed; the next check asks again

Decisions out (`*_to_*`, each hands a decision over once):
    `fetch_to_do()`     the one read the feed needs now (stream after a seq, or a snapshot), or None
    `flush_due()`       True when applied deltas wait: call `flush()` soon (once per loop turn)
    `resyncs_to_count()` sockets sent a snapshot instead of deltas since the last call, by reason

and `flush()` hands the deltas applied since the last flush to every watcher, `broadcast(text)`
and `heartbeat(...)` the messages outside the seq order. A watcher whose backlog is full is reset
to "send a fresh snapshot" (websockets' broadcast advice: the fan-out never waits for a socket).

A socket's writer drains its watcher with `Watcher.frame_to_send(feed)` and sets `last_sent`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Final, NamedTuple

import msgspec

from seatmap.live.protocol import Delta, Heartbeat, Presence, Snapshot, Status, batch_text, encoder

RING: Final = 512  # recent deltas kept per feed, to serve resumes without Redis
MAX_RESYNCS: Final = 5  # a socket that needs more snapshots than this in a row is too slow
BATCH_MAX: Final = 256  # messages per `batch` frame (a backlog holds SEATMAP_WS_QUEUE_SIZE at most)
# Deltas one socket may be replayed: a burst that covers a reconnect from as far back as the
# default recovery log (1,000 changes), refilled at a rate no honest client needs to exceed.
REPLAY_BURST: Final = 1024
REPLAY_RATE: Final = 64.0  # deltas per second

RESYNC: Final = (-1, "")  # backlog item: "send this socket a fresh snapshot"
RESUME: Final = -2  # backlog item: (RESUME, "<since>"), the client asked to resume

_incoming: Final = msgspec.json.Decoder(Delta | Status)


class Fetch(NamedTuple):
    """A read the feed needs: the recovery stream after `after`, or a snapshot when `after` is None."""

    after: int | None
    reason: str  # why, for the resync count if it ends in a snapshot: gap, reconnect, behind, lost


class Replay(NamedTuple):
    """Exactly the deltas after a client's `since`, and the seq it is at once they are sent."""

    texts: list[str]
    last: int

    def frames(self, batching: bool) -> list[str]:
        """The frames that carry them: one per delta, or `batch` frames of at most BATCH_MAX."""
        if not batching:
            return self.texts
        chunks = [self.texts[i : i + BATCH_MAX] for i in range(0, len(self.texts), BATCH_MAX)]
        return [batch_text(chunk) if len(chunk) > 1 else chunk[0] for chunk in chunks]


FROM_STREAM: Final = "from stream"  # Feed.resume: the memory does not reach back; read the stream


class ResumeFrom(NamedTuple):
    """Watcher.frame_to_send: the client asked to resume; replay from `since` or send a snapshot."""

    since: int


class TooSlow(NamedTuple):
    """Watcher.frame_to_send: the socket could not keep up even with snapshots; close it."""


class Feed:
    """One screening's live map in this process: deltas applied strictly in seq order.

    A gap (a message lost while pub/sub was down, or published between our snapshot and our
    subscription) is filled from the recovery stream, or, when the stream no longer reaches
    back, by a fresh snapshot for every watcher. While a read is under way, and before the
    first snapshot, messages wait in `pending`; duplicates and older seqs are dropped.
    """

    def __init__(self, screening: int, *, ring: int = RING) -> None:
        self.screening = screening
        self.seq = 0
        self.seats: dict[str, str] = {}
        self.ga: dict[str, int] = {}
        self.status = "scheduled"
        self.viewers = 0
        self.loaded = False
        self.watchers: set[Watcher] = set()
        self.ring: collections.deque[tuple[int, str]] = collections.deque(maxlen=ring)
        self.pending: list[tuple[int, Delta | Status, str]] = []
        self._outbox: list[tuple[int, str]] = []  # applied, not yet handed to the watchers
        self._stamps: list[float] = []  # commit times of the deltas in the outbox
        self._fetch: Fetch | None = None  # the read under way or due
        self._fetch_due = False  # ... and not yet handed to the I/O layer
        self._snapshot: tuple[int, int, str] | None = None
        self._resyncs: dict[str, int] = {}

    # -- events in -----------------------------------------------------------------------

    def receive_snapshot(self, seq: int, seats: dict[str, str], ga: dict[str, int], status: str) -> None:
        """The first snapshot, or the one a fetch asked for: every watcher then resyncs."""
        reload = self._fetch is not None and self._fetch.after is None
        self.seq = seq
        self.seats = dict(seats)
        self.ga = dict(ga)
        self.status = status
        self.ring.clear()
        self._snapshot = None
        if reload:
            assert self._fetch is not None
            self._resync_all(self._fetch.reason)
            self._fetch = None
        self.loaded = True
        self._drain()

    def receive_message(self, text: str) -> None:
        """A pub/sub message. Raises msgspec.DecodeError for one that is not a delta or status."""
        message = _incoming.decode(text)
        seq = message.seq
        if not self.loaded or self._fetch is not None:
            self.pending.append((seq, message, text))
        elif seq == self.seq + 1:
            self._apply(message, text)
        elif seq > self.seq:
            self.pending.append((seq, message, text))
            self._want(seq, "gap")

    def receive_entries(self, entries: list[tuple[int, str]]) -> None:
        """The recovery stream after the seq `fetch_to_do` named, oldest first."""
        fetch = self._fetch
        assert fetch is not None and fetch.after is not None, "entries nobody asked for"
        if entries and entries[0][0] == self.seq + 1:
            for seq, text in entries:
                if seq == self.seq + 1:
                    self._apply(_incoming.decode(text), text)
        elif entries or fetch.reason != "reconnect":
            # The stream starts after a gap (it was trimmed), or it is empty while we know of a
            # later seq (every reason but a reconnect; Redis lost the screening): only a
            # snapshot brings us up to date.
            self._fetch, self._fetch_due = Fetch(None, fetch.reason), True
            return
        self._fetch = None
        self._drain()

    def receive_seq(self, seq: int | None, asked_at: int | None = None) -> None:
        """The once-a-second check: catches a gap that no later delta would reveal. `asked_at` is
        our seq when the read was sent: Redis's seq below it means Redis went back (deltas applied
        while the read was on its way make ours higher than a reply that is merely late)."""
        if not self.loaded:
            return
        if seq is None:
            self._want(self.seq + 1, "lost")  # Redis lost this screening (restart, flush)
        elif seq > self.seq:
            self._want(seq, "behind")
        elif asked_at is not None and seq < asked_at and self._fetch is None:
            # Redis's seq went back: a replica promoted by a failover had not received the last
            # writes of the primary that died (replication is asynchronous). The seqs we applied
            # past it will be reused for other changes, so only a snapshot is the truth now.
            self._fetch, self._fetch_due = Fetch(None, "rewound"), True

    def receive_viewers(self, viewers: int) -> None:
        if viewers != self.viewers:
            self.viewers = viewers
            self.broadcast(encoder.encode(Presence(viewers=viewers)).decode())

    def receive_reconnect(self) -> None:
        """Messages may have been lost meanwhile: read the stream after our seq."""
        if self.loaded:
            self._want(None, "reconnect")

    def receive_fetch_failure(self) -> None:
        self._fetch, self._fetch_due = None, False

    # -- decisions out -------------------------------------------------------------------

    def fetch_to_do(self) -> Fetch | None:
        """The read to carry out and answer with receive_entries/receive_snapshot, handed out once."""
        if not self._fetch_due:
            return None
        self._fetch_due = False
        return self._fetch

    def flush_due(self) -> bool:
        return bool(self._outbox)

    def resyncs_to_count(self) -> dict[str, int]:
        counts, self._resyncs = self._resyncs, {}
        return counts

    def flush(self) -> list[float]:
        """Hand the deltas applied since the last flush to every watcher; their commit times.

        Per delta and socket this was the hottest line of a busy screening (100 holders on one
        map: 400,000 offers a second); per loop turn it is one extend per socket.
        """
        self._hand_over()
        stamps, self._stamps = self._stamps, []
        return stamps

    def broadcast(self, text: str) -> None:
        """A message outside the seq order (presence): after the deltas applied so far, to all."""
        self._hand_over()
        slow = 0
        for watcher in self.watchers:
            slow += watcher.offer(0, text)
        self._count("too_slow", slow)

    def heartbeat(self, quiet_since: float) -> None:
        """To watchers that sent nothing since then: the seq, after the deltas up to it."""
        quiet = [w for w in self.watchers if w.last_sent < quiet_since]
        if quiet:
            self._hand_over()  # a heartbeat's seq must not overtake the deltas it counts
            text = encoder.encode(Heartbeat(seq=self.seq)).decode()
            slow = 0
            for watcher in quiet:
                slow += watcher.offer(0, text)
            self._count("too_slow", slow)

    def snapshot_text(self) -> tuple[int, str]:
        """The encoded snapshot, encoded once per (seq, viewers) however many sockets join."""
        # Presence is summed across processes once a second; until then count at least ours.
        viewers = max(self.viewers, len(self.watchers))
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

    def resume(self, since: int) -> Replay | str | None:
        """A client that has seen up to `since`: a Replay from memory, FROM_STREAM, or None (snapshot)."""
        if since > self.seq:
            return None  # a number from before a Redis restart (seqs restart higher), or made up
        if since == self.seq:
            return Replay([], self.seq)
        if not self.ring or self.ring[0][0] > since + 1:
            return FROM_STREAM
        return Replay([text for seq, text in self.ring if seq > since], self.seq)

    @staticmethod
    def resume_from_stream(since: int, entries: list[tuple[int, str]]) -> Replay | None:
        """The stream entries after `since` as a Replay, or None when the stream no longer reaches back."""
        if not entries or entries[0][0] != since + 1:
            return None
        return Replay([text for _, text in entries], entries[-1][0])

    # -- rules ---------------------------------------------------------------------------

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
            self._stamps.append(message.ts)
        else:
            self.status = message.status
        self.seq = message.seq
        self.ring.append((message.seq, text))
        self._outbox.append((message.seq, text))

    def _hand_over(self) -> None:
        items, self._outbox = self._outbox, []
        if items:
            slow = 0
            for watcher in self.watchers:
                slow += watcher.offer_many(items)
            self._count("too_slow", slow)

    def _want(self, seen: int | None, reason: str) -> None:
        """Ask for the stream after our seq, unless a read is already under way."""
        if self._fetch is None:
            self._fetch, self._fetch_due = Fetch(self.seq, reason), True

    def _drain(self) -> None:
        """Apply what waited, in seq order; what still has a gap before it asks for a fill."""
        if not self.pending:
            return
        pending, self.pending = sorted(self.pending, key=lambda p: p[0]), []
        for seq, message, text in pending:
            if seq == self.seq + 1:
                self._apply(message, text)
            elif seq > self.seq + 1:
                self.pending.append((seq, message, text))
        if self.pending:
            self._want(self.pending[-1][0], "gap")

    def _resync_all(self, reason: str) -> None:
        for watcher in self.watchers:
            watcher.reset()
        self._count(reason, len(self.watchers))

    def _count(self, reason: str, n: int) -> None:
        if n:
            self._resyncs[reason] = self._resyncs.get(reason, 0) + n


class Watcher:
    """One socket on one feed: a bounded backlog of (seq, text), and what the socket has seen.

    A deque rather than a queue: handing over is an append or an extend (this runs once per
    socket per loop turn). `wake`, set by the socket's writer while it waits, is called when
    something arrives. The writer alone decides what the socket has seen: it skips anything at
    or below `last_seq`, so a snapshot followed by queued deltas never shows a change twice.
    """

    __slots__ = (
        "_in_a_row", "_replay_stamp", "batching", "last_sent", "last_seq", "maxsize", "pending",
        "replay_budget", "resyncs", "wake",
    )  # fmt: skip

    def __init__(self, maxsize: int, *, batching: bool = False, now: float = 0.0) -> None:
        self.maxsize = maxsize
        self.batching = batching
        self.pending: collections.deque[tuple[int, str]] = collections.deque()
        self.wake: Callable[[], None] | None = None
        self.resyncs = 0
        self.last_seq = 0
        self.last_sent = now
        self._in_a_row = 0
        self.replay_budget = float(REPLAY_BURST)
        self._replay_stamp = now

    # -- fan-out side (each returns 1 if the socket was too slow and is reset, else 0) ---

    def offer(self, seq: int, text: str) -> int:
        if len(self.pending) >= self.maxsize:
            return self.reset()  # drop what is queued: a snapshot replaces all of it
        self.pending.append((seq, text))
        if self.wake is not None:
            self.wake()
        return 0

    def offer_many(self, items: list[tuple[int, str]]) -> int:
        if len(self.pending) + len(items) > self.maxsize:
            return self.reset()
        self.pending.extend(items)
        if self.wake is not None:
            self.wake()
        return 0

    def reset(self) -> int:
        """Forget the backlog; the writer sends a fresh snapshot next."""
        self.pending.clear()
        self.pending.append(RESYNC)
        self.resyncs += 1
        if self.wake is not None:
            self.wake()
        return 1

    def resume(self, since: int) -> None:
        """The client's `resume`, in order with the deltas queued before it."""
        self.offer(RESUME, str(since))

    def may_replay(self, count: int, now: float) -> bool:
        """Whether a resume may be served by replaying `count` deltas (taking them from the budget).

        A replay costs a frame per delta; a snapshot costs one. A client that resumes from far
        back again and again (a resume is a cheap command, allowed ten times a second) would make
        the server send hundreds of frames per command, so replays draw on a per-socket budget
        (REPLAY_BURST deltas, refilled at REPLAY_RATE a second) and a resume that would overdraw
        it gets a snapshot instead: still correct, one frame. Nothing to replay is always allowed.
        """
        self.replay_budget = min(
            float(REPLAY_BURST), self.replay_budget + (now - self._replay_stamp) * REPLAY_RATE
        )
        self._replay_stamp = now
        if count > self.replay_budget:
            return False
        self.replay_budget -= max(count, 0)
        return True

    # -- writer side ---------------------------------------------------------------------

    def delay(self, now: float, window: float) -> float:
        """Nagle for seat maps: a batching socket busy within `window` waits for more to share the frame."""
        return self.last_sent + window - now if self.batching else 0.0

    def started(self, seq: int, now: float) -> None:
        """A snapshot or a replay up to `seq` went out outside the backlog."""
        self.last_seq = seq
        self.last_sent = now

    def frame_to_send(self, feed: Feed) -> str | ResumeFrom | TooSlow | None:
        """The next frame for the socket (None: nothing new), taken from a non-empty backlog."""
        seq, text = self.pending.popleft()
        if seq == RESYNC[0]:
            self._in_a_row += 1
            if self._in_a_row > MAX_RESYNCS:
                return TooSlow()
            seq, text = feed.snapshot_text()
            self.last_seq = seq
        elif seq == RESUME:
            return ResumeFrom(int(text))
        elif seq > 0:
            if seq <= self.last_seq:
                return None
            self.last_seq = seq
            self._in_a_row = 0
        if self.batching and self.pending:
            before = self.last_seq
            text = self._batch(text)
            if self.last_seq > before:
                self._in_a_row = 0  # deltas went out after the snapshot: it keeps up
        return text

    def _batch(self, first: str) -> str:
        """`first` and what queued up behind it, up to the next control item, as one frame.

        Under load the cost of a socket is per frame (an ASGI send and a write syscall each),
        not per byte: a holder on a busy screening gets tens of deltas per frame instead of
        tens of frames. A quiet socket still gets each delta on its own, at once.
        """
        texts = [first]
        pending = self.pending
        while pending and len(texts) < BATCH_MAX and pending[0][0] >= 0:
            seq, text = pending.popleft()
            if seq > 0:
                if seq <= self.last_seq:
                    continue
                self.last_seq = seq
            texts.append(text)
        return texts[0] if len(texts) == 1 else batch_text(texts)
