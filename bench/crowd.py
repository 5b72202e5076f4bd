"""The people on the system while it breaks: buyers over REST, viewers and slow sockets over WebSocket.

A buyer does what the web UI does (hold two adjacent seats, order with an Idempotency-Key, open
the gateway's page, approve, wait for the tickets) against whichever web process answers: when
one does not (killed, or answering 5xx), the buyer repeats the step on another, with the same
Idempotency-Key, as a browser behind a load balancer would. A viewer keeps the map from its
snapshot and deltas, reconnects with `?since=` when its socket ends (on any web process), and
counts every seq that was not the next one. A slow socket opens and then never reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bench import wire
from bench.checkout import Http


@dataclass
class Tally:
    """What the buyers saw, added up."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    paid: list[int] = field(default_factory=list)  # order ids the buyers saw paid
    refunded: list[int] = field(default_factory=list)  # order ids whose refund was accepted (202)

    @property
    def server_errors(self) -> int:
        """Answers 500..599 other than 503 (an outage must say 503 unavailable)."""
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)


class Unanswered(Exception):
    """No web process gave an answer to this step in time."""


class Buyer:
    """One account with its own keep-alive connection to each web process."""

    def __init__(self, token: str, ports: list[int], tally: Tally, rng: random.Random) -> None:
        self.headers = {"authorization": f"Bearer {token}"}
        self.clients = [Http("127.0.0.1", port) for port in ports]
        self.tally = tally
        self.rng = rng
        self.turn = rng.randrange(len(ports))

    async def call(
        self, method: str, path: str, body: Any = None, key: str | None = None, within: float = 30.0
    ) -> tuple[int, Any]:
        """The step on one web process after another until one answers other than 5xx."""
        headers = dict(self.headers)
        if key is not None:
            headers["idempotency-key"] = key
        deadline = time.monotonic() + within
        while True:
            client = self.clients[self.turn % len(self.clients)]
            try:
                async with asyncio.timeout(10):
                    status, data = await client.request(method, path, body, headers)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
                self.tally.transport_errors += 1
                if client.writer is not None:
                    client.writer.close()
                client.writer = None
                status, data = 0, b""
            else:
                self.tally.statuses[status] += 1
                if status < 500:
                    try:
                        return status, msgspec.json.decode(data) if data else None
                    except msgspec.DecodeError:  # a page (the gateway's), not an API answer
                        return status, None
            self.turn += 1
            if time.monotonic() > deadline:
                raise Unanswered(f"{method} {path}: last status {status}")
            await asyncio.sleep(0.1 + 0.2 * self.rng.random())

    async def buy(self, screening: int, seats: list[str], wait: float = 10.0) -> int | None:
        """hold -> order -> pay -> approve -> paid; the order id, or None when the seats were taken."""
        status, held = await self.call("POST", "/api/holds", {"screening_id": screening, "seats": seats})
        if status != 201:
            return None
        status, order = await self.call(
            "POST", "/api/orders", {"hold_token": held["token"]}, key=uuid.uuid4().hex
        )
        if status != 201:
            return None
        status, payment = await self.call("POST", f"/api/orders/{order['id']}/payments")
        if status not in (200, 201):
            return None
        page = payment["redirect_url"].split("/pay/", 1)[1]
        await self.call("POST", f"/pay/{page}/approve")
        return await self.paid(order["id"], wait)

    async def paid(self, order_id: int, within: float = 10.0) -> int | None:
        """Waits (bounded) until the order is paid, as the buyer's page polls; a buyer who gives
        up leaves the order to settle by itself (the verdict waits for that)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status, order = await self.call("GET", f"/api/orders/{order_id}")
            if status == 200 and order["status"] == "paid":
                self.tally.paid.append(order_id)
                return order_id
            if status == 200 and order["status"] not in ("pending", "paid"):
                return None
            await asyncio.sleep(0.1)
        return None

    async def refund(self, order_id: int) -> bool:
        status, _ = await self.call("POST", f"/api/orders/{order_id}/refund")
        if status == 202:
            self.tally.refunded.append(order_id)
        return status == 202

    async def hold(self, screening: int, seats: list[str]) -> dict[str, Any] | None:
        status, held = await self.call("POST", "/api/holds", {"screening_id": screening, "seats": seats})
        return held if status == 201 else None

    async def release(self, token: str) -> None:
        await self.call("DELETE", f"/api/holds/{token}")

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


async def buying_race(
    buyers: list[Buyer], screening: int, pairs: list[list[str]], until: float, rng: random.Random
) -> None:
    """Every buyer tries random pairs (so several race for the same one) until none is left or
    time is up; buyers whose step goes unanswered give up that pair and try another."""
    remaining = list(pairs)

    async def one(buyer: Buyer) -> None:
        while remaining and time.monotonic() < until:
            seats = rng.choice(remaining)
            try:
                wait = max(1.0, until - time.monotonic())
                if await buyer.buy(screening, seats, wait) is not None and seats in remaining:
                    remaining.remove(seats)
            except Unanswered:
                continue

    await asyncio.gather(*(one(b) for b in buyers))


class Viewer:
    """A viewer's map of one screening, kept from what it receives, and its seq faults."""

    def __init__(self, screening: int, ports: list[int], number: int) -> None:
        self.screening = screening
        self.ports = ports
        self.turn = number
        self.seats: dict[str, str] = {}
        self.seq: int | None = None
        self.gaps = 0
        self.duplicates = 0
        self.snapshots = 0
        self.reconnects = 0
        self.frees: dict[str, list[float]] = {}  # seat -> times a `free` arrived
        self.socket: wire.Socket | None = None
        self.stopped = False
        self._task: asyncio.Task[None] | None = None

    # wire.Receiver
    def text(self, payload: bytes, received: float) -> None:
        message = msgspec.json.decode(payload)
        for one in message["messages"] if message["type"] == "batch" else [message]:
            self._apply(one, received)

    def closed(self, code: int) -> None:
        pass

    def _apply(self, message: dict[str, Any], received: float) -> None:
        kind = message["type"]
        if kind == "snapshot":
            self.snapshots += 1
            self.seq = message["seq"]
            self.seats = dict(message["seats"])
        elif kind in ("delta", "status"):
            seq = message["seq"]
            if self.seq is not None and seq <= self.seq:
                self.duplicates += 1
                return
            if self.seq is not None and seq != self.seq + 1:
                self.gaps += 1
            self.seq = seq
            for change in message.get("changes", ()):
                if change["state"] == "free":
                    self.seats.pop(change["seat"], None)
                    self.frees.setdefault(change["seat"], []).append(received)
                else:
                    self.seats[change["seat"]] = change["state"]

    async def run(self) -> None:
        """Connected until stopped; a socket that ends is replaced at once (since = last seq)."""
        while not self.stopped:
            port = self.ports[self.turn % len(self.ports)]
            query = "batch=1" + (f"&since={self.seq}" if self.seq is not None else "")
            try:
                self.socket = await wire.connect(
                    "127.0.0.1", port, f"/ws/screenings/{self.screening}?{query}", self
                )
                await self.socket.done
            except (OSError, TimeoutError):
                pass
            self.socket = None
            if not self.stopped:
                self.reconnects += 1
                self.turn += 1
                await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"viewer-{self.turn}")

    async def stop(self) -> None:
        self.stopped = True
        if self.socket is not None:
            with contextlib.suppress(Exception):
                await self.socket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class SlowSocket:
    """Opens the map and then never reads: the kernel buffers fill, and the server must notice.

    Its receive buffer is small (4 KB), so the server's writes stall after little data, as a
    phone's do; whether the server has closed it is read from the kernel (TCP_INFO: the peer's
    FIN arrived), since a socket that does not read never sees the close frame."""

    def __init__(self, screening: int, port: int) -> None:
        self.screening, self.port = screening, port
        self.socket: wire.Socket | None = None
        self.counter = _Snapshots()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        path = f"/ws/screenings/{self.screening}"
        _, self.socket = await loop.create_connection(
            lambda: wire.Socket("127.0.0.1", self.port, path, self.counter), sock=sock
        )
        async with asyncio.timeout(30):
            await self.socket.opened
        assert self.socket.transport is not None
        self.socket.transport.pause_reading()

    @property
    def closed_by_server(self) -> bool:
        """The server sent its FIN (or reset): the socket is done from the server's side."""
        if self.socket is None or self.socket.transport is None:
            return True
        sock = self.socket.transport.get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return True
        state = int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0])
        return state != _ESTABLISHED

    def snapshots(self) -> int:
        """Snapshots received (once reading again): more than the first is a reset by the server."""
        return self.counter.snapshots

    def resume(self) -> None:
        if self.socket is not None and self.socket.transport is not None:
            with contextlib.suppress(Exception):
                self.socket.transport.resume_reading()

    async def close(self) -> None:
        if self.socket is not None and self.socket.transport is not None:
            self.socket.transport.abort()


_ESTABLISHED = 1  # tcp_states.h


class _Snapshots:
    """Counts snapshots without decoding anything else."""

    def __init__(self) -> None:
        self.snapshots = 0
        self.code: int | None = None

    def text(self, payload: bytes, received: float) -> None:
        if payload.startswith(b'{"type":"snapshot"'):
            self.snapshots += 1

    def closed(self, code: int) -> None:
        self.code = code
