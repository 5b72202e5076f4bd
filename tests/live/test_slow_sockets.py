"""Sockets that stop reading: found by the server, closed with 4009, beside viewers that keep up.

The slow clients are raw TCP sockets with a tiny receive buffer that complete the WebSocket
handshake and then never read, as a stuck phone does. The kernel's buffers take the first
megabyte or so (the deltas here are big: the whole hall at once); then uvicorn pauses writing,
and a frame that waits longer than SEATMAP_WS_SEND_TIMEOUT ends the socket (before: nothing did,
until uvicorn's keepalive).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from prometheus_client import REGISTRY

from seatmap.live.protocol import CLOSE_TOO_SLOW
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.support import TIMEOUT_FACTOR, Server, Viewer, make_screening

SLOW_SOCKETS = 3
ROWS = 20


def _stalled() -> float:
    return REGISTRY.get_sample_value("seatmap_socket_sends_stalled_total") or 0.0


def _open() -> float:
    return REGISTRY.get_sample_value("seatmap_sockets_open") or 0.0


async def _stuck_client(server: Server, screening: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    loop = asyncio.get_running_loop()
    address = urlsplit(server.http)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.setblocking(False)
    await loop.sock_connect(sock, (address.hostname, address.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/screenings/{screening} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # byte by byte: leave the first frame unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def _close_code(sock: socket.socket, within: float) -> int | None:
    """Read what the server sent up to its close frame; that frame's code (None: it hung up
    without one)."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    at = 0
    async with asyncio.timeout(within):
        while chunk := await loop.sock_recv(sock, 1 << 20):
            data += chunk
            while True:  # walk the whole frames received so far: server frames are unmasked
                if at + 2 > len(data):
                    break
                opcode, length, start = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
                if length == 126:
                    length, start = struct.unpack_from("!H", data, at + 2)[0], at + 4
                elif length == 127:
                    length, start = struct.unpack_from("!Q", data, at + 2)[0], at + 10
                if start + length > len(data):
                    break
                if opcode == 0x8:
                    code: int = struct.unpack_from("!H", data, start)[0]
                    return code
                at = start + length
    return None


async def _keep_reading(viewer: Viewer, done: asyncio.Event) -> None:
    """A viewer that keeps up: reads until the churn is over and nothing more comes for a while."""
    while True:
        try:
            await viewer.recv(within=0.3)
        except TimeoutError:
            if done.is_set():
                return


async def _churn(rt: Runtime, screening: int, until: asyncio.Event) -> int:
    """The whole hall blocked and unblocked again and again (a delta of every seat each time, as
    when the cinema closes a hall), until told to stop; the deltas made."""
    seats = [f"{chr(ord('A') + row)}{n}" for row in range(ROWS) for n in range(1, 21)]
    inventory = rt.holds.inventory
    made = 0
    while not until.is_set() and made < 2_000:
        assert not await inventory.block(screening, seats)
        await inventory.unblock(screening, seats)
        made += 2
    return made


async def test_sockets_that_stop_reading_are_closed_as_too_slow_while_a_viewer_gets_every_delta(
    settings: Settings, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients that never read are closed with 4009 within seconds of their buffers filling (no
    error logged), while a normal viewer on the same map receives every delta, in order."""
    screening = await make_screening(rt, ["S" * 20] * ROWS, strand_rule=False)
    quick = replace(settings, ws_send_timeout=0.5)
    stalled_before = _stalled()
    with caplog.at_level(logging.INFO):
        async with running(quick) as srv:
            open_before = _open()
            viewer = await Viewer.connect(srv, screening, max_size=None)
            snapshot = await viewer.next("snapshot")
            stuck = [await _stuck_client(srv, screening) for _ in range(SLOW_SOCKETS)]
            done_reading = asyncio.Event()
            reading = asyncio.create_task(_keep_reading(viewer, done_reading))
            try:
                stop = asyncio.Event()
                churn = asyncio.create_task(_churn(rt, screening, stop))
                started = time.monotonic()
                try:
                    async with asyncio.timeout(60 * TIMEOUT_FACTOR):
                        while _stalled() - stalled_before < SLOW_SOCKETS:
                            assert not churn.done(), "the churn ended before the slow sockets were found"
                            await asyncio.sleep(0.05)
                finally:
                    stop.set()
                    made = await churn
                    done_reading.set()
                detected = time.monotonic() - started
                # Read now: the close frame waits in the server's buffer behind what filled it.
                codes = await asyncio.gather(*(_close_code(sock, 30 * TIMEOUT_FACTOR) for sock in stuck))
            finally:
                for sock in stuck:
                    sock.close()
            # The viewer got every change: seqs without a gap or a repeat, up to the last one.
            last = snapshot["seq"] + made
            await asyncio.wait_for(reading, 30 * TIMEOUT_FACTOR)
            seqs = [d["seq"] for d in viewer.deltas()]
            assert seqs == list(range(snapshot["seq"] + 1, last + 1))
            await viewer.close()
            async with asyncio.timeout(10 * TIMEOUT_FACTOR):
                while _open() > open_before:  # noqa: ASYNC110 (every handler ended)
                    await asyncio.sleep(0.05)
    assert codes == [CLOSE_TOO_SLOW] * SLOW_SOCKETS
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert "Unexpected ASGI message" not in caplog.text
    print(f"{made} deltas; {SLOW_SOCKETS} stalled sockets closed {detected:.1f}s after the churn began")
