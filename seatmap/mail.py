"""Mail: every mail is a row first, written in the transaction that causes it, then sent as a job.

`enqueue` inserts into `mail_outbox` on the caller's connection, so a registration that
rolls back leaves no mail behind and a committed one never loses its mail. What happens next
depends on `SEATMAP_SMTP_URL`:

- unset: the row is `stored` at once, nothing is sent; in dev mode the whole mail (a
  verification code, say) is written to the log so a developer can read it there;
- `smtp://user:pass@host:port` (STARTTLS when the server offers it) or `smtps://…` (TLS from
  the start): the row is `pending` and a `mail` job is queued with it (jobs.py), which the job
  worker runs: `send` makes one SMTP conversation and marks the row `sent`.

Retries are the job outbox's: a failed send is retried with its back-off (with jitter), a
worker that dies mid-send lets the job's lease run out, and after the job's `max_attempts` the
job is dead, with the error, for an admin to see and retry; the row says `dead` too. A refusal
that retrying cannot change (every recipient refused with a 5xx) is dead at once. Sending is
at-least-once: a crash after the SMTP server accepted a mail but before the row was marked
`sent` sends it again, with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

from seatmap import jobs
from seatmap.db import AnyConnection
from seatmap.errors import ConfigError
from seatmap.runtime import Runtime
from seatmap.settings import Settings

log = logging.getLogger("seatmap.mail")

Status = Literal["pending", "sent", "stored", "dead"]

JOB: Final = "mail"
SEND_TIMEOUT: Final = 30.0  # seconds for one SMTP conversation (well inside a job's lease)

ENQUEUE: Final = """
INSERT INTO mail_outbox (user_id, recipient, subject, body, status)
VALUES ($1, $2, $3, $4, $5)
RETURNING id
"""
GET: Final = "SELECT id, recipient, subject, body, status, created_at FROM mail_outbox WHERE id = $1"
MARK_SENT: Final = "UPDATE mail_outbox SET status = 'sent', sent_at = now() WHERE id = $1"
MARK_DEAD: Final = "UPDATE mail_outbox SET status = 'dead' WHERE id = $1 AND status = 'pending'"
COUNT_PENDING: Final = "SELECT count(*) FROM mail_outbox WHERE status = 'pending'"


def job_key(mail_id: int) -> str:
    """The dedupe key of a mail's job: one job per mail, found again by it."""
    return f"mail:{mail_id}"


async def enqueue(
    conn: AnyConnection, settings: Settings, *, to: str, subject: str, body: str, user_id: int | None
) -> int:
    """Write a mail (and, with SMTP, its job) in the caller's transaction; returns its id."""
    status: Status = "pending" if settings.smtp_url is not None else "stored"
    async with conn.transaction():  # a savepoint inside the caller's: the row and its job, or neither
        mail_id: int = await conn.fetchval(ENQUEUE, user_id, to, subject, body, status)
        if status == "pending":
            await jobs.enqueue(
                conn, JOB, {"mail_id": mail_id}, dedupe_key=job_key(mail_id),
                max_attempts=settings.job_max_attempts,
            )  # fmt: skip
    if status == "stored":
        if settings.dev:
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
class OutgoingMail:
    id: int
    recipient: str
    subject: str
    body: str
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


def smtp_server(settings: Settings) -> SMTPServer:
    if settings.smtp_url is None:
        raise ConfigError("mail delivery needs SEATMAP_SMTP_URL")
    return SMTPServer.from_url(settings.smtp_url.reveal())


async def send(rt: Runtime, job: jobs.Job) -> None:
    """The `mail` job: send one pending mail by SMTP and mark it sent.

    A failure raises, so the job is retried with the outbox's back-off; on the job's last
    attempt, or for a refusal no retry can change (`jobs.GiveUp`), the row is marked dead too.
    """
    mail_id = int(job.payload["mail_id"])
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(GET, mail_id)
    if row is None or row["status"] in ("sent", "stored"):
        return  # sent by an earlier run of this job (it died before recording it), or never to be
    outgoing = OutgoingMail(row["id"], row["recipient"], row["subject"], row["body"], row["created_at"])
    try:
        server = smtp_server(rt.settings)  # a worker without SMTP: retried until it has one, then dead
        await asyncio.to_thread(send_sync, server, build_message(rt.settings, outgoing), SEND_TIMEOUT)
    except Exception as exc:
        permanent = _permanent(exc)
        if permanent or job.attempts >= job.max_attempts:
            async with rt.pool.acquire() as conn:
                await conn.execute(MARK_DEAD, mail_id)
            log.error("mail #%d to %s is dead after %d attempt(s): %r", mail_id, outgoing.recipient,
                      job.attempts, exc)  # fmt: skip
        if permanent:
            raise jobs.GiveUp(f"{type(exc).__name__}: {exc}") from exc
        raise
    async with rt.pool.acquire() as conn:
        await conn.execute(MARK_SENT, mail_id)
    log.info("mail #%d sent to %s", mail_id, outgoing.recipient)


async def pending_count(conn: AnyConnection) -> int:
    count: int = await conn.fetchval(COUNT_PENDING)
    return count
