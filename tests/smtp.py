"""A real, tiny SMTP server for the tests: asyncio streams speaking the verbs smtplib uses.

It is the outside party of mail delivery (as a payment provider is for payments), so it is
the one thing the tests provide themselves; everything of ours runs for real against it.
It can be told to refuse senders (a transient 4xx), recipients (a permanent 5xx) or to demand
AUTH PLAIN credentials.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType


class SMTPSink:
    def __init__(
        self,
        *,
        refuse_sender: str | None = None,
        refuse_recipient: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.refuse_sender = refuse_sender
        self.refuse_recipient = refuse_recipient
        self.credentials = credentials
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.connections = 0
        self.authenticated: list[str] = []
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, scheme: str = "smtp", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    async def __aenter__(self) -> SMTPSink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._sessions:
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for(self, predicate: Callable[[], object], seconds: float) -> None:
        """Until `predicate()` (checked after every SMTP event) is true."""
        async with asyncio.timeout(seconds):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._changed.set()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._changed.set()

        async def reply(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        await reply("220 sink ESMTP ready")
        sender = ""
        recipients: list[str] = []
        while line := await reader.readline():
            command = line.decode().rstrip("\r\n")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                await reply(
                    "250-sink" + ("\r\n250-AUTH PLAIN" if self.credentials else "") + "\r\n250 8BITMIME"
                )
            elif verb == "HELO":
                await reply("250 sink")
            elif verb == "AUTH":
                mechanism, _, initial = argument.partition(" ")
                _, user, password = base64.b64decode(initial).decode().split("\0")
                if mechanism.upper() == "PLAIN" and (user, password) == self.credentials:
                    self.authenticated.append(user)
                    await reply("235 2.7.0 accepted")
                else:
                    await reply("535 5.7.8 bad credentials")
            elif verb == "MAIL":
                if self.credentials and not self.authenticated:
                    await reply("530 5.7.0 authentication required")
                elif self.refuse_sender:
                    await reply(self.refuse_sender)
                else:
                    sender, recipients = argument, []
                    await reply("250 ok")
            elif verb == "RCPT":
                if self.refuse_recipient:
                    await reply(self.refuse_recipient)
                else:
                    recipients.append(argument)
                    await reply("250 ok")
            elif verb == "DATA":
                await reply("354 go ahead")
                data = bytearray()
                while (chunk := await reader.readline()) != b".\r\n":
                    if not chunk:
                        return
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                message = message_from_bytes(bytes(data), policy=policy.default)
                assert isinstance(message, EmailMessage)
                self.messages.append(message)
                self.envelopes.append((sender, recipients))
                await reply("250 queued")
                self._changed.set()
            elif verb in ("RSET", "NOOP"):
                await reply("250 ok")
            elif verb == "QUIT":
                await reply("221 bye")
                return
            else:
                await reply("502 not implemented")
