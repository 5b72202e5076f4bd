"""An outage the test owns: a TCP gate in front of PostgreSQL or Redis that it closes and opens.

The machine's servers are shared by other test sessions, so a test cannot stop them. Closed, the
gate refuses new connections (ECONNREFUSED, as from a stopped server) and drops the open ones
(reset, as when a server dies); opened again, it listens on the same port, so the runtime finds
"its server" back where it was, with its data, as after a restart. Stalled, it accepts
connections and never answers (a server that hangs), until it is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


class Gate:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.unix: str | None = None
        self.host, self.target_port = parts.hostname, parts.port
        query = parse_qs(parts.query)
        if parts.scheme == "unix":  # redis over a unix socket: redis://… through the gate
            self.unix, self.scheme = parts.path, "redis"
        elif "host" in query and query["host"][0].startswith("/"):  # libpq style: a socket dir
            self.unix = str(next(Path(query["host"][0]).glob(".s.PGSQL.*")))
            del query["host"]
        self._parts = parts._replace(query=urlencode(query, doseq=True))
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.stalled = False
        self.held = 0  # connections taken and left unanswered while stalled

    def url(self) -> str:
        """The URL of the service through this gate."""
        parts = self._parts
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        path = parts.path if self.unix is None or self.scheme != "redis" else ""
        return urlunsplit(parts._replace(scheme=self.scheme, netloc=netloc, path=path))

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """The outage: nothing listens on the port, and every open connection is cut."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._pipes):
                transport = writer.transport
                transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stalled:
            self.held += 1
            with contextlib.suppress(OSError):
                await reader.read()  # until the client gives up or dies
            writer.transport.abort()
            return
        try:
            if self.unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix)
            else:
                assert self.host is not None
                up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            self._pipes -= {writer, up_writer}
            for w in (writer, up_writer):
                w.transport.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()  # one side gone: cut the other, as a dead server's peer sees


@contextlib.asynccontextmanager
async def gate(url: str) -> AsyncIterator[Gate]:
    g = Gate(url)
    await g.open()
    try:
        yield g
    finally:
        await g.close()
