"""The client side of RFC 6455, just enough to be thousands of viewers from one process.

Why not the `websockets` client: the load generator shares a 2-core machine with the server
it measures, and the `websockets` asyncio client spends about twice the CPU per received
message (~30 us against ~14 us here, kernel time included: a parser coroutine, an assembler,
a task wake-up per `recv`) of this `asyncio.Protocol`, which parses frames straight out of
`data_received` and hands each text payload to a callback with the time it arrived. At
5,000 viewers and 50 changes/s that is the difference between the load generator taking
one core or two of the machine's two. `python -m bench.live --client websockets` keeps the
library client for cross-checking the figures.

Covered: the opening handshake (checked), text/binary/continuation frames, ping -> pong,
the closing handshake, masked client frames, and, when asked (`deflate=True`, as browsers
do), permessage-deflate for what the server sends (RFC 7692; the client itself sends
uncompressed frames, which the extension allows). Not covered: subprotocols, TLS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import struct
import time
import zlib
from typing import Any, Final, Protocol

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT: Final = 0x1
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
NO_STATUS: Final = 1005
ABNORMAL: Final = 1006
_CLOSE_WAIT: Final = 5.0  # seconds for the server's half of the closing handshake
_OPEN_WAIT: Final = 30.0  # seconds for its half of the opening handshake


class Receiver(Protocol):
    """What a socket tells its owner: each text message (with its arrival time) and the end."""

    def text(self, payload: bytes, received: float) -> None: ...

    def closed(self, code: int) -> None: ...


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (clients must mask; RFC 6455 section 5.3)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + key + _mask(payload, key)


class Socket(asyncio.Protocol):
    """One client WebSocket. `opened` resolves after the handshake; `done` when the TCP connection ends."""

    def __init__(self, host: str, port: int, path: str, receiver: Receiver, deflate: bool = False) -> None:
        self.receiver = receiver
        self.key = base64.b64encode(os.urandom(16))
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        ).encode()
        self.inflate: Any = None  # a zlib decompressor once permessage-deflate is agreed
        self._compressed = False
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.is_open = False
        self.close_code = ABNORMAL
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._closing = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        buffer = self._buffer
        buffer += data
        if not self.is_open and not self._handshake():
            return
        self._frames(received)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake ({exc})"))
        if not self.done.done():
            self.done.set_result(self.close_code)
            self.receiver.closed(self.close_code)

    # -- parsing ---------------------------------------------------------------------------

    def _handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status, *lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        accept = base64.b64encode(hashlib.sha1(self.key + _GUID).digest()).decode()
        if not status.startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept:
            assert self.transport is not None
            self.transport.close()
            self.opened.set_exception(ConnectionError(f"handshake refused: {status}"))
            return False
        extension = headers.get("sec-websocket-extensions", "")
        if extension.startswith("permessage-deflate"):
            bits = re.search(r"server_max_window_bits=(\d+)", extension)
            # With context takeover (the default) one decompressor lives as long as the socket.
            self.inflate = zlib.decompressobj(wbits=-int(bits[1]) if bits else -15)
        self.is_open = True
        self.opened.set_result(None)
        return True

    def _frames(self, received: float) -> None:
        buffer = self._buffer
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            key = b""
            if second & 0x80:  # servers never mask, but tolerate it
                if size - start < 4:
                    break
                key = bytes(buffer[start : start + 4])
                start += 4
            end = start + length
            if end > size:
                break
            payload = bytes(buffer[start:end])
            if key:
                payload = _mask(payload, key)
            pos = end
            self._frame(first & 0xC0, first & 0x0F, payload, received)
        if pos:
            del buffer[:pos]

    def _frame(self, flags: int, opcode: int, payload: bytes, received: float) -> None:
        if opcode == TEXT or opcode == 0x2 or opcode == 0x0:
            if opcode != 0x0:
                self._compressed = bool(flags & 0x40)  # RSV1 on a message's first frame
            if not flags & 0x80:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            if self._compressed:
                payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
            self.receiver.text(payload, received)
        elif opcode == PING:
            self._write(frame(PONG, payload))
        elif opcode == CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else NO_STATUS
            if not self._closing:
                self._write(frame(CLOSE, payload[:2]))
            self.is_open = False
            assert self.transport is not None
            self.transport.close()

    # -- sending ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_text(self, text: str | bytes) -> None:
        self._write(frame(TEXT, text.encode() if isinstance(text, str) else text))

    async def close(self) -> None:
        """The closing handshake; the TCP connection is dropped anyway after a few seconds."""
        if self.is_open and not self._closing:
            self._closing = True
            self._write(frame(CLOSE, struct.pack("!H", 1000)))
        try:
            async with asyncio.timeout(_CLOSE_WAIT):
                await asyncio.shield(self.done)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


async def connect(host: str, port: int, path: str, receiver: Receiver, deflate: bool = False) -> Socket:
    loop = asyncio.get_running_loop()
    transport, socket = await loop.create_connection(
        lambda: Socket(host, port, path, receiver, deflate), host, port
    )
    try:
        async with asyncio.timeout(_OPEN_WAIT):
            await socket.opened
    except BaseException:
        transport.close()
        raise
    return socket
