"""Signed webhooks: how they are signed and checked, and a small client that delivers them.

A webhook carries `Seatmap-Signature: t=<unix seconds>,v1=<hex>`, the HMAC-SHA256 of
`<t>.<body>` (the scheme Stripe and others use). The receiver recomputes it in constant time,
accepts several `v1` while a secret rotates, and refuses a timestamp further than its
tolerance from its clock, so a captured webhook cannot be replayed later. A gateway signs and
delivers; we verify (payments.py). The built-in simulated gateway delivers with `Courier`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from seatmap.errors import InvalidSignature
from seatmap.settings import Settings

SIGNATURE_HEADER: Final = "Seatmap-Signature"


def webhook_key(settings: Settings) -> bytes:
    """SEATMAP_WEBHOOK_SECRET, or a key derived from the JWT secret (never the JWT key itself)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.reveal().encode()
    return hmac.new(
        settings.jwt_secret.reveal().encode(), b"seatmap webhook signing v1", hashlib.sha256
    ).digest()


def sign(key: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(key: bytes, header: str | None, body: bytes, *, tolerance: int, now: float) -> None:
    """Accept `t=…,v1=…` (several v1 while a secret rotates) signed with `key` within `tolerance` s."""
    if not header:
        raise InvalidSignature("The webhook has no signature.", reason="missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature("The webhook signature is malformed.", reason="malformed")
    expected = sign(key, body, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("The webhook signature does not match.", reason="mismatch")
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("The webhook is too old (or from the future): a replay?", reason="stale")


# ---- delivering ------------------------------------------------------------------------------------


class Courier:
    """POSTs webhooks over kept-alive HTTP/1.1 connections, one request at a time each.

    All a gateway needs: small JSON bodies to a few origins, the status and body back. httpx
    did this too, at a fifth of a web worker's CPU in the checkout benchmark; a request here
    is one write and a few reads on asyncio streams.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"cannot deliver to {url!r}")
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1", f"host: {parts.netloc}", f"content-length: {len(body)}"]
        request = ("\r\n".join(head + [f"{k}: {v}" for k, v in headers.items()]) + "\r\n\r\n").encode() + body
        idle = self._idle.setdefault(origin, [])
        while True:
            reused = bool(idle)
            reader, writer = idle.pop() if reused else await self._open(origin)
            try:
                async with asyncio.timeout(self.timeout):
                    writer.write(request)
                    status, answer, keep = await _response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                writer.close()
                if reused:
                    continue  # the server had closed this idle connection: try a fresh one
                raise
            except BaseException:
                writer.close()
                raise
            if keep:
                idle.append((reader, writer))
            else:
                writer.close()
            return status, answer

    async def _open(self, origin: tuple[str, str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        scheme, host, port = origin
        context = ssl.create_default_context() if scheme == "https" else None
        async with asyncio.timeout(self.timeout):
            return await asyncio.open_connection(host, port, ssl=context)

    def close(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
        self._idle.clear()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may be reused) of one HTTP/1.1 response."""
    line = await reader.readline()
    if not line.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP response: {line[:50]!r}")
    status = int(line.split(b" ", 2)[1])
    length, chunked, keep = -1, False, line.startswith(b"HTTP/1.1")
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            keep = "close" not in value
    if chunked:
        parts = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        return status, b"".join(parts), keep
    if length >= 0:
        return status, await reader.readexactly(length), keep
    return status, await reader.read(), False
