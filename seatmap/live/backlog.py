"""A socket's backlog: what the fan-out has handed it and its writer has not sent yet.

Bounded, and never awaited by the fan-out: a socket that falls behind by more than its size
has its backlog replaced by one "send a fresh snapshot" marker (RESYNC), so a client that
stops reading costs a fixed amount of memory and converges as soon as it reads again.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from seatmap.live.channels import Channel

RESYNC: Final = (-1, "")  # backlog item: "send this socket a fresh snapshot"


class Subscriber:
    """One socket on one channel: a bounded backlog of (seq, text) that the socket's writer drains.

    A deque and a single waiter rather than an asyncio.Queue: a writer that is busy sending is
    not woken per message, and handing over is an append or an extend (this runs once per socket
    per delta, or per loop turn).
    """

    __slots__ = ("_waiter", "channel", "last_sent", "maxsize", "pending", "resyncs")

    def __init__(self, channel: Channel, maxsize: int) -> None:
        self.channel = channel
        self.maxsize = maxsize
        self.pending: collections.deque[tuple[int, str]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.resyncs = 0
        self.last_sent = time.monotonic()

    def offer(self, seq: int, text: str) -> None:
        if len(self.pending) >= self.maxsize:
            # Drop what is queued: a snapshot replaces all of it.
            self.reset()
            return
        self.pending.append((seq, text))
        self._wake()

    def offer_many(self, items: list[tuple[int, str]]) -> None:
        if len(self.pending) + len(items) > self.maxsize:
            self.reset()
            return
        self.pending.extend(items)
        self._wake()

    def reset(self) -> None:
        """Forget the backlog; the writer sends a fresh snapshot next."""
        self.pending.clear()
        self.pending.append(RESYNC)
        self.resyncs += 1
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> tuple[int, str]:
        while not self.pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.pending.popleft()

    def more(self, limit: int) -> list[tuple[int, str]]:
        """Messages already queued behind the one just taken, up to the next control item."""
        taken: list[tuple[int, str]] = []
        pending = self.pending
        while pending and len(taken) < limit and pending[0][0] >= 0:
            taken.append(pending.popleft())
        return taken
