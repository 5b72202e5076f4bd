"""`/ws/screenings/{id}`: the live seat map over a WebSocket (protocol v1, docs/protocol.md).

Each socket has two tasks: this reader, which validates and executes commands (through the
same `Holds` as the REST API), and a writer, which sends what the socket's `Watcher` (feed.py)
decides: the deltas it has not seen, batched or not, a snapshot when it fell behind, a replay
on `resume`, or a close when it is too slow even for snapshots. This module is the WebSocket
I/O only; the rules are in feed.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Final, NamedTuple

from prometheus_client import Counter, Gauge
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from seatmap.accounts import origins
from seatmap.accounts.auth import ACCESS_COOKIE, Principal, principal_from_token, still_valid
from seatmap.accounts.verification import require_verified
from seatmap.api import ascii_int
from seatmap.errors import (
    InvalidToken,
    NotFound,
    SeatmapError,
    TooManySockets,
    Unauthorized,
    error_response,
    socket_error,
)
from seatmap.live.channels import RESYNCS, Channels
from seatmap.live.feed import FROM_STREAM, REPLAY_BURST, Feed, Replay, ResumeFrom, TooSlow, Watcher
from seatmap.live.holds import Holds
from seatmap.live.protocol import (
    CLOSE_ABUSE,
    CLOSE_NOT_FOUND,
    CLOSE_ORIGIN,
    CLOSE_TOO_SLOW,
    Auth,
    ClientMessage,
    Error,
    Extend,
    Hold,
    Ping,
    Pong,
    ProtocolError,
    Release,
    Result,
    Resume,
    ServerMessage,
    decode_client,
    encode,
)
from seatmap.runtime import Runtime, runtime
from seatmap.settings import Settings

log = logging.getLogger("seatmap.live.socket")

SOCKETS_OPEN: Final = Gauge("seatmap_sockets_open", "Live seat-map WebSockets open in this process.")
SOCKETS_REFUSED: Final = Counter(
    "seatmap_sockets_refused", "WebSocket handshakes refused because their address has too many open."
)


def origin_allowed(ws: WebSocket, settings: Settings) -> bool:
    """Browsers always send Origin; other clients may not, and are not a CSRF risk. A browser's
    must be the public URL's origin or an allowed one, scheme, host and port (origins.py): never
    judged by the Host header, which a DNS-rebinding page controls."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    return origins.origin_allowed(origin, origins.trusted_origins(settings))


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 if allowed, else the seconds until the next command would be."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Strikes:
    """Commands refused for coming too fast. They leak away at the allowed command rate.

    They used to reset whenever one command got through: at 400 pings a second a token refills
    every 100 ms, so the count never passed the limit and the flood was answered forever. A
    client that stays over the rate now reaches `limit` within seconds; one that slowed down
    after an error sees its strikes drain.
    """

    def __init__(self, rate: float, limit: int) -> None:
        self.rate = rate
        self.limit = limit
        self.count = 0.0
        self.stamp = time.monotonic()

    def add(self) -> bool:
        """One more refused command; True when the client is over the limit (close it)."""
        now = time.monotonic()
        self.count = max(0.0, self.count - (now - self.stamp) * self.rate) + 1
        self.stamp = now
        return self.count > self.limit


class Session:
    """One socket: who it is, what it has seen (its watcher), how it behaves."""

    def __init__(
        self, ws: WebSocket, rt: Runtime, holds: Holds, channels: Channels, feed: Feed, watcher: Watcher
    ) -> None:
        self.ws = ws
        self.rt = rt
        self.holds = holds
        self.channels = channels
        self.feed = feed
        self.watcher = watcher
        self.principal: Principal | None = None
        self.token: str | None = None  # the principal's, checked again at each command
        rate, burst = rt.settings.ws_commands_per_second, rt.settings.ws_command_burst
        self.bucket = TokenBucket(rate, burst)
        self.strikes = Strikes(rate, 3 * burst)

    async def send(self, message: ServerMessage) -> None:
        await self.ws.send_text(encode(message))

    # -- writer --------------------------------------------------------------------------

    async def start(self, since: int | None) -> None:
        """The first frames: exactly the deltas after `since` when they can be had, else a snapshot."""
        if since is None:
            seq, text = self.feed.snapshot_text()
            await self.ws.send_text(text)
            self.watcher.started(seq, time.monotonic())
        else:
            await self._resume(since)

    async def _resume(self, since: int) -> None:
        plan = self.feed.resume(since)
        reason = "resume"
        if plan is not None:
            behind = self.feed.seq - since
            if not self.watcher.may_replay(behind, time.monotonic()):
                # Resumed from far back too often: one snapshot frame instead of hundreds of deltas.
                plan = None
                if behind <= REPLAY_BURST:
                    reason = "replay_budget"
        if plan == FROM_STREAM:
            plan = Feed.resume_from_stream(since, await self.channels.log_after(self.feed.screening, since))
        if isinstance(plan, Replay):
            for text in plan.frames(self.watcher.batching):
                await self.ws.send_text(text)
            self.watcher.started(plan.last, time.monotonic())
            return
        RESYNCS.labels(reason).inc()
        seq, text = self.feed.snapshot_text()
        await self.ws.send_text(text)
        self.watcher.started(seq, time.monotonic())

    async def write(self) -> Close | None:
        watcher = self.watcher
        window = self.rt.settings.ws_batch_window
        loop = asyncio.get_running_loop()
        while True:
            while not watcher.pending:
                waiter = loop.create_future()
                watcher.wake = functools.partial(_resolve, waiter)
                try:
                    await waiter
                finally:
                    watcher.wake = None
            wait = watcher.delay(time.monotonic(), window)
            if wait > 0:
                # Nagle for seat maps: on a busy screening, wait out the window so that what
                # arrives meanwhile shares the frame. A quiet socket is not delayed at all.
                await asyncio.sleep(wait)
            frame = watcher.frame_to_send(self.feed)
            if type(frame) is str:  # the common case first: this runs per frame and socket
                await self.ws.send_text(frame)
                watcher.last_sent = time.monotonic()
            elif isinstance(frame, TooSlow):
                return Close(CLOSE_TOO_SLOW, "too slow: reconnect and resume")
            elif isinstance(frame, ResumeFrom):
                await self._resume(frame.since)

    # -- reader --------------------------------------------------------------------------

    async def read(self) -> Close | None:
        max_size = self.rt.settings.ws_max_message
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            data: str | bytes | None = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > max_size:
                return Close(1009, "message too big")
            wait = self.bucket.take()
            if wait:
                if self.strikes.add():
                    return Close(CLOSE_ABUSE, "too many commands")
                await self.send(Error(code="rate_limited", message="Slow down.", retry_after=round(wait, 3)))
                continue
            try:
                command = _decode(data)
            except ProtocolError as exc:
                await self.send(Error(code=exc.code, message=exc.message, path=exc.path))
                continue
            try:
                reply = await self.execute(command)
            except SeatmapError as exc:
                await self.ws.send_text(socket_error(exc, getattr(command, "ref", None)))
                continue
            if reply is not None:
                await self.send(reply)

    async def execute(self, command: ClientMessage) -> ServerMessage | None:
        if isinstance(command, Ping):
            return Pong(ref=command.ref)
        if isinstance(command, Auth):
            self.principal = await principal_from_token(self.rt, command.token)
            self.token = command.token
            return Result(ref=command.ref)
        if isinstance(command, Resume):
            self.watcher.resume(command.seq)
            return None
        who = self.principal
        if who is None or self.token is None:
            raise Unauthorized("Send an `auth` message (or log in) before changing seats.")
        try:
            who = await still_valid(self.rt, self.token, who)
        except InvalidToken:
            self.principal = self.token = None  # logged out, disabled or given a new role meanwhile
            raise
        screening = self.feed.screening
        if isinstance(command, Hold):
            if command.token is None:
                await require_verified(self.rt, who)
                address = self.ws.client.host if self.ws.client else "unknown"
                hold = await self.holds.create(
                    who, screening, command.seats, command.ga, command.best_available, address
                )
            else:
                self._own_screening(command.token)
                hold = await self.holds.modify(who, command.token, command.seats, [])
            return Result(ref=command.ref, hold=hold, mine=hold.seats)
        if isinstance(command, Release):
            self._own_screening(command.token)
            if command.seats is None:
                await self.holds.release(who, command.token)
                return Result(ref=command.ref, released=True)
            hold = await self.holds.modify(who, command.token, [], command.seats)
            return Result(ref=command.ref, hold=hold, mine=hold.seats)
        if isinstance(command, Extend):
            self._own_screening(command.token)
            hold = await self.holds.extend(who, command.token)
            return Result(ref=command.ref, hold=hold, mine=hold.seats)
        raise AssertionError(f"unhandled command {command!r}")

    def _own_screening(self, token: str) -> None:
        if not token.startswith(f"{self.feed.screening}."):
            raise NotFound("No live hold with this token on this screening.")


class Close(NamedTuple):
    """How the reader or the writer wants the socket closed (`_serve` closes it)."""

    code: int
    reason: str


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _decode(data: str | bytes) -> ClientMessage:
    if isinstance(data, bytes):
        raise ProtocolError("text_only", "Send JSON in text frames.")
    return decode_client(data)


async def screening_socket(ws: WebSocket) -> None:
    rt = runtime(ws)
    if not origin_allowed(ws, rt.settings):
        # Closing before accept turns into an HTTP 403 on the handshake.
        await ws.close(CLOSE_ORIGIN)
        return
    # The id and `since` are read as ASCII digits up to int64 (the edge rule, seatmap/api.py):
    # any other id is a screening that does not exist (4004), any other `since` an error frame.
    screening = ascii_int(ws.path_params["screening"])
    since_raw = ws.query_params.get("since")
    since = ascii_int(since_raw) if since_raw is not None else None
    await ws.accept()
    if since_raw is not None and since is None:
        await ws.send_text(
            encode(Error(code="invalid_message", message="`since` must be a sequence number."))
        )
    holds = rt.holds
    try:
        if not screening:
            raise NotFound("No such screening.")
        await holds.inventory.layout(screening)
    except NotFound as exc:
        await ws.send_text(socket_error(exc, None))
        await ws.close(CLOSE_NOT_FOUND, "no such screening")
        return
    principal: Principal | None = None
    cookie = ws.cookies.get(ACCESS_COOKIE)
    if cookie:
        with contextlib.suppress(SeatmapError):
            principal = await principal_from_token(rt, cookie)
    channels = rt.channels
    if channels is None:  # a worker's runtime has no fan-out; only web processes mount this route
        raise RuntimeError("the live seat map needs a web runtime")
    batching = ws.query_params.get("batch") == "1"
    with SOCKETS_OPEN.track_inprogress():
        async with channels.watch(screening, batching=batching) as (feed, watcher):
            session = Session(ws, rt, holds, channels, feed, watcher)
            session.token = cookie if principal is not None else None
            await _serve(ws, session, principal, since)


async def _serve(ws: WebSocket, session: Session, principal: Principal | None, since: int | None) -> None:
    """The socket's life on its feed: the first frames, then its reader and writer until one ends.

    The side that ends it does not close the socket itself: the other side is stopped first, so
    no frame is sent after the close (the writer used to race a reader's 1009/4008 close, and its
    send after the close was logged as a failed session).
    """
    session.principal = principal
    try:
        await session.start(since)
        writer = asyncio.create_task(session.write(), name="live.writer")
        reader = asyncio.create_task(session.read(), name="live.reader")
        done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in (writer, reader):
            if task not in done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError):
                    await task
        close: Close | None = None
        for task in done:
            failure = task.exception()
            if failure is None:
                close = close or task.result()
            elif not isinstance(failure, WebSocketDisconnect | OSError) and not _closed_under_us(failure):
                log.error("websocket session failed", exc_info=failure)
        if close is not None and ws.application_state == WebSocketState.CONNECTED:
            await ws.close(close.code, close.reason)
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(1000)


def _closed_under_us(failure: BaseException) -> bool:
    """The server closed the connection itself and the writer's next send was refused.

    uvicorn's websockets-sansio protocol closes on its own (1007 for a text frame that is not
    UTF-8, 1011 when a keepalive ping times out) and then answers a send with this RuntimeError
    rather than a disconnect; the client is gone, which is no failure of the session.
    """
    return isinstance(failure, RuntimeError) and "after sending 'websocket.close'" in str(failure)


async def admitted_socket(ws: WebSocket) -> None:
    """The route: a socket counts against its address's cap while it is open (connections.py).

    Refused at the handshake with HTTP 429 and the JSON error (the ASGI denial-response
    extension; a server without it turns the close before `accept` into a 403).
    """
    rt = runtime(ws)
    cap = rt.settings.ws_max_per_address
    if cap == 0 or rt.channels is None:
        await screening_socket(ws)
        return
    connections = rt.channels.connections
    address = ws.client.host if ws.client else "unknown"
    if not await connections.admit(address, cap):
        SOCKETS_REFUSED.inc()
        refused = TooManySockets(f"At most {cap} live seat maps may be open from one address.", limit=cap)
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(error_response(refused))
        else:
            await ws.close(CLOSE_ABUSE)
        return
    try:
        await screening_socket(ws)
    finally:
        await connections.leave(address)


routes: list[BaseRoute] = [WebSocketRoute("/ws/screenings/{screening}", admitted_socket)]
