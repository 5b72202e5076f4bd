"""The mail outbox: every mail is a row first, written in the transaction that causes it.

`enqueue` inserts into `mail_outbox` on the caller's connection, so a registration that
rolls back leaves no mail behind and a committed one never loses its mail. What happens next
depends on `SEATMAP_SMTP_URL`:

- unset: the row is `stored` at once, nothing is sent; in dev mode the whole mail (a
  verification code, say) is written to the log so a developer can read it there;
- `smtp://user:pass@host:port` (STARTTLS when the server offers it) or `smtps://…` (TLS from
  the start): the row stays `pending` and `deliver_forever`, run by `seatmap worker`, sends it.

Delivery claims due rows with `FOR UPDATE SKIP LOCKED`, so several workers never pick the
same row, and pushes their `next_attempt_at` forward by a lease: a worker that dies mid-send
leaves the row to be retried when the lease runs out, never stuck. A failed send is retried
with exponential back-off and ends `dead` (with `last_error`) after `max_attempts`, where a
human can see it. Sending is at-least-once: a crash after the SMTP server accepted a mail
but before the row was marked `sent` sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

import asyncpg

from seatmap.db import AnyConnection
from seatmap.errors import ConfigError
from seatmap.runtime import Runtime
from seatmap.settings import Settings

log = logging.getLogger("seatmap.mail")

Status = Literal["pending", "sent", "stored", "dead"]

# NOTIFY is delivered on commit, so the worker wakes exactly when a new mail is visible.
CHANNEL: Final = "seatmap_mail"

ENQUEUE: Final = """
INSERT INTO mail_outbox (user_id, recipient, subject, body, status)
VALUES ($1, $2, $3, $4, $5)
RETURNING id
"""

NOTIFY: Final = "SELECT pg_notify($1, '')"

CLAIM: Final = """
UPDATE mail_outbox
SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM mail_outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, recipient, subject, body, attempts, created_at
"""

MARK_SENT: Final = """
UPDATE mail_outbox SET status = 'sent', sent_at = now(), last_error = NULL WHERE id = $1
"""

# $3: whether this failure is final (too many attempts, or a permanent refusal).
MARK_FAILED: Final = """
UPDATE mail_outbox
SET status = CASE WHEN $3 THEN 'dead' ELSE 'pending' END,
    last_error = $2,
    next_attempt_at = now() + make_interval(secs => $4)
WHERE id = $1
"""

SECONDS_TO_NEXT_DUE: Final = """
SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now())::float8
FROM mail_outbox WHERE status = 'pending'
"""

COUNT_PENDING: Final = "SELECT count(*) FROM mail_outbox WHERE status = 'pending'"


async def enqueue(
    conn: AnyConnection, settings: Settings, *, to: str, subject: str, body: str, user_id: int | None
) -> int:
    """Write a mail to the outbox in the caller's transaction; returns its id."""
    status: Status = "pending" if settings.smtp_url is not None else "stored"
    mail_id: int = await conn.fetchval(ENQUEUE, user_id, to, subject, body, status)
    if status == "pending":
        await conn.execute(NOTIFY, CHANNEL)
    elif settings.dev:
        log.info(
            "mail #%d to %s (no SMTP configured: stored, not sent)\nSubject: %s\n\n%s",
            mail_id,
            to,
            subject,
            body,
        )
    else:
        log.info("mail #%d to %s stored, not sent: SEATMAP_SMTP_URL is not set", mail_id, to)
    return mail_id


@dataclass(frozen=True)
class SMTPServer:
    """Where mail goes, parsed from `SEATMAP_SMTP_URL`."""

    host: str
    port: int
    tls: bool  # smtps: TLS from the first byte; smtp: STARTTLS when offered
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SMTPServer:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConfigError("SEATMAP_SMTP_URL is not a valid URL") from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError("SEATMAP_SMTP_URL must look like smtp://user:pass@host:port or smtps://…")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if tls else 25),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


@dataclass(frozen=True)
class Delivery:
    """How hard delivery tries. Back-off after the n-th failed attempt: backoff·2^(n-1), capped."""

    batch: int = 10
    max_attempts: int = 6
    backoff: float = 30.0
    max_backoff: float = 3600.0
    poll_interval: float = 10.0
    timeout: float = 30.0  # per SMTP conversation

    @property
    def lease(self) -> float:
        # Longer than a whole batch can take (its sends run side by side), so a live worker
        # never has its rows taken over.
        return self.timeout * 3 + 30.0

    def delay(self, attempts: int) -> float:
        return min(self.backoff * 2.0 ** max(attempts - 1, 0), self.max_backoff)


@dataclass(frozen=True)
class OutgoingMail:
    id: int
    recipient: str
    subject: str
    body: str
    attempts: int
    created_at: datetime


def build_message(settings: Settings, mail: OutgoingMail) -> EmailMessage:
    message = EmailMessage()
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "seatmap.local"
    message["From"] = settings.mail_from
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(mail.created_at)
    # The same id on every attempt, so a receiver can drop the duplicate of an at-least-once
    # delivery.
    message["Message-ID"] = f"<outbox.{mail.id}.{int(mail.created_at.timestamp() * 1e6)}@{domain}>"
    message.set_content(mail.body)
    return message


def send_sync(server: SMTPServer, message: EmailMessage, timeout: float) -> None:
    """One SMTP conversation (blocking: run it in a thread)."""
    context = ssl.create_default_context()
    smtp = (
        smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
        if server.tls
        else smtplib.SMTP(server.host, server.port, timeout=timeout)
    )
    with smtp:
        smtp.ehlo()
        if not server.tls and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        if server.username is not None:
            smtp.login(server.username, server.password or "")
        smtp.send_message(message)


def _permanent(exc: Exception) -> bool:
    """Every recipient refused with a 5xx: trying again will not help."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in exc.recipients.values())
    return False


async def _deliver_one(rt: Runtime, server: SMTPServer, policy: Delivery, mail: OutgoingMail) -> bool:
    message = build_message(rt.settings, mail)
    try:
        await asyncio.to_thread(send_sync, server, message, policy.timeout)
    except Exception as exc:
        # Any failure of one mail is that mail's problem: it is recorded on the row (and
        # retried, or dead-lettered), never allowed to stop the delivery of the others.
        error = f"{type(exc).__name__}: {exc}"[:1000]
        final = mail.attempts >= policy.max_attempts or _permanent(exc)
        async with rt.pool.acquire() as conn:
            await conn.execute(MARK_FAILED, mail.id, error, final, policy.delay(mail.attempts))
        if final:
            log.error(
                "mail #%d to %s is dead after %d attempt(s): %s",
                mail.id,
                mail.recipient,
                mail.attempts,
                error,
            )
        else:
            log.warning(
                "mail #%d to %s failed (attempt %d), will retry: %s",
                mail.id,
                mail.recipient,
                mail.attempts,
                error,
            )
        return False
    async with rt.pool.acquire() as conn:
        await conn.execute(MARK_SENT, mail.id)
    log.info("mail #%d sent to %s", mail.id, mail.recipient)
    return True


async def deliver_due(rt: Runtime, server: SMTPServer, policy: Delivery) -> int:
    """Claim up to one batch of due mails and try to send each; returns how many were claimed."""
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(CLAIM, policy.batch, policy.lease)
    claimed = [OutgoingMail(**dict(row)) for row in rows]
    await asyncio.gather(*(_deliver_one(rt, server, policy, mail) for mail in claimed))
    return len(claimed)


def smtp_server(settings: Settings) -> SMTPServer:
    if settings.smtp_url is None:
        raise ConfigError("mail delivery needs SEATMAP_SMTP_URL")
    return SMTPServer.from_url(settings.smtp_url.reveal())


async def deliver_forever(rt: Runtime, stop: asyncio.Event, *, policy: Delivery | None = None) -> None:
    """Send pending mails until `stop` is set; the current batch is finished first.

    A NOTIFY from `enqueue` wakes the loop at once; besides, it sleeps until the next retry is
    due, and never longer than `poll_interval` (the safety net behind the notification).
    """
    policy = policy or Delivery()
    server = smtp_server(rt.settings)
    wake = asyncio.Event()

    def notified(*args: object) -> None:
        wake.set()

    async with rt.pool.acquire() as listener:
        await listener.add_listener(CHANNEL, notified)
        try:
            while not stop.is_set():
                wake.clear()
                if await deliver_due(rt, server, policy) >= policy.batch:
                    continue  # more may be due right now
                async with rt.pool.acquire() as conn:
                    next_due: float | None = await conn.fetchval(SECONDS_TO_NEXT_DUE)
                timeout = policy.poll_interval if next_due is None else min(policy.poll_interval, next_due)
                if timeout > 0:
                    await _first_of(stop, wake, timeout)
        finally:
            with contextlib.suppress(asyncpg.InterfaceError):
                await listener.remove_listener(CHANNEL, notified)


async def pending_count(conn: AnyConnection) -> int:
    count: int = await conn.fetchval(COUNT_PENDING)
    return count


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
