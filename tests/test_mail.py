"""Mail: stored without SMTP (logged in dev mode); with it, sent as a job, retried, dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import httpx
import pytest

from seatmap import jobs, mail
from seatmap.app import create_app
from seatmap.errors import ConfigError
from seatmap.runtime import Runtime
from seatmap.settings import Secret, Settings
from tests.conftest import running
from tests.smtp import SMTPSink
from tests.support import PASSWORD, TIMEOUT_FACTOR

FAST = jobs.Policy(backoff=0.05, max_backoff=0.2, poll_interval=0.5)
WAIT = 5 * TIMEOUT_FACTOR


def with_smtp(rt: Runtime, url: str, **changes: object) -> Runtime:
    """The test's runtime, configured the way a worker with SEATMAP_SMTP_URL is."""
    return replace(rt, settings=replace(rt.settings, smtp_url=Secret(url), **changes))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def delivering(rt: Runtime, policy: jobs.Policy = FAST) -> AsyncIterator[None]:
    """A job worker that sends mail only, in the background, stopped (and checked) at the end."""

    async def send(job: jobs.Job) -> None:
        await mail.send(rt, job)

    assert rt.settings.database_url is not None
    stop = asyncio.Event()
    worker = jobs.Worker(rt.pool, rt.settings.database_url, {mail.JOB: send}, policy)
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(WAIT):
            await task


async def job_of(rt: Runtime, mail_id: int) -> dict[str, object]:
    """The mail's job: its attempts, last error and status are the mail's delivery record."""
    async with rt.pool.acquire() as conn:
        record = await conn.fetchrow(
            "SELECT status, attempts, last_error, run_at - now() AS due_in FROM jobs WHERE dedupe_key = $1",
            mail.job_key(mail_id),
        )
    assert record is not None
    return dict(record)


async def enqueue(rt: Runtime, to: str = "ada@example.com", subject: str = "Hello", body: str = "Hi!") -> int:
    async with rt.pool.acquire() as conn:
        return await mail.enqueue(conn, rt.settings, to=to, subject=subject, body=body, user_id=None)


async def row(rt: Runtime, mail_id: int) -> dict[str, object]:
    async with rt.pool.acquire() as conn:
        record = await conn.fetchrow("SELECT * FROM mail_outbox WHERE id = $1", mail_id)
    assert record is not None
    return dict(record)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll the database (it has no event to wait on) until `check` says yes."""
    async with asyncio.timeout(WAIT):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_without_smtp_a_registration_mail_is_stored_and_logged(
    client: httpx.AsyncClient, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """In dev mode without SMTP, the verification mail is stored and its code shows in the server log."""
    caplog.set_level(logging.INFO, logger="seatmap.mail")
    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    response = await client.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    assert response.status_code == 201
    async with rt.pool.acquire() as conn:
        stored = await conn.fetchrow("SELECT * FROM mail_outbox WHERE recipient = $1", email)
    assert stored is not None
    assert stored["status"] == "stored"
    assert stored["user_id"] == response.json()["id"]
    match = re.search(r"\b(\d{6})\b", stored["body"])
    assert match is not None
    assert any(match[1] in record.getMessage() and email in record.getMessage() for record in caplog.records)


async def test_outside_dev_mode_a_stored_mail_is_not_logged(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """In production without SMTP the log says a mail was stored, but not what it says."""
    caplog.set_level(logging.INFO, logger="seatmap.mail")
    production = replace(rt, settings=replace(rt.settings, dev=False))
    mail_id = await enqueue(production, body="secret code 123456")
    assert (await row(rt, mail_id))["status"] == "stored"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"mail #{mail_id}" in text
    assert "123456" not in text


async def test_a_mail_is_part_of_the_callers_transaction(rt: Runtime) -> None:
    """A change that rolls back takes its mail with it."""
    with pytest.raises(RuntimeError):
        async with rt.pool.acquire() as conn, conn.transaction():
            await mail.enqueue(conn, rt.settings, to="ada@example.com", subject="s", body="b", user_id=None)
            raise RuntimeError("the change failed")
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mail_outbox") == 0


async def test_with_smtp_the_job_worker_delivers_the_registration_code(
    settings: Settings, rt: Runtime
) -> None:
    """With SMTP configured the code mail waits as pending, the job worker sends it, and the code works."""
    async with SMTPSink(credentials=("mailer", "p@ss/word")) as sink:
        smtp_rt = with_smtp(rt, sink.url(userinfo="mailer:p%40ss%2Fword"))
        email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
        async with (
            running(create_app(smtp_rt.settings)) as srv,
            httpx.AsyncClient(base_url=srv.http) as client,
        ):
            response = await client.post(
                "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"}
            )
            assert response.status_code == 201
            async with rt.pool.acquire() as conn:
                mail_id = await conn.fetchval("SELECT id FROM mail_outbox WHERE recipient = $1", email)
            assert (await row(rt, mail_id))["status"] == "pending"

            async with delivering(smtp_rt):
                await sink.wait_for(lambda: sink.messages, WAIT)

            message = sink.messages[0]
            assert message["To"] == email
            assert message["From"] == settings.mail_from
            assert sink.authenticated == ["mailer"]
            assert sink.envelopes[0][1] == [f"TO:<{email}>"]
            code = re.search(r"\b(\d{6})\b", message.get_content())
            assert code is not None
            verified = await client.post("/api/auth/verify", json={"email": email, "code": code[1]})
            assert verified.status_code == 200
        sent = await row(rt, mail_id)
        assert sent["status"] == "sent"
        assert sent["sent_at"] is not None
        assert (await job_of(rt, mail_id))["attempts"] == 1


async def test_a_failing_server_gets_retries_then_the_mail_is_dead(rt: Runtime) -> None:
    """A server that keeps answering 451 is tried max_attempts times with back-off, then the mail is dead."""
    async with SMTPSink(refuse_sender="451 4.3.0 try again later") as sink:
        smtp_rt = with_smtp(rt, sink.url(), job_max_attempts=3)
        mail_id = await enqueue(smtp_rt)
        async with delivering(smtp_rt):

            async def is_dead() -> bool:
                return (await row(rt, mail_id))["status"] == "dead"

            await eventually(is_dead)
        job = await job_of(rt, mail_id)
        assert (job["status"], job["attempts"]) == ("dead", 3)
        assert "451" in str(job["last_error"])
        assert sink.connections == 3
        assert sink.messages == []


async def test_an_unreachable_server_leaves_the_mail_pending_for_later(rt: Runtime) -> None:
    """When nothing listens at the SMTP address, the attempt is counted and the mail waits for its retry."""
    async with SMTPSink() as sink:
        url = sink.url()
    smtp_rt = with_smtp(rt, url)  # the sink is closed: connection refused
    mail_id = await enqueue(smtp_rt)
    async with delivering(smtp_rt, replace(FAST, backoff=60, max_backoff=600)):

        async def failed_once() -> bool:
            return (await job_of(rt, mail_id))["last_error"] is not None

        await eventually(failed_once)
    assert (await row(rt, mail_id))["status"] == "pending"
    job = await job_of(rt, mail_id)
    assert (job["status"], job["attempts"]) == ("queued", 1)
    assert "ConnectionRefused" in str(job["last_error"])
    # Not due again before its back-off (60 s, jittered down to no less than half) has passed.
    assert job["due_in"].total_seconds() > 25  # type: ignore[attr-defined]


async def test_a_refused_recipient_is_dead_at_once(rt: Runtime) -> None:
    """A permanent 5xx for the recipient is not retried: the mail is dead after one attempt."""
    async with SMTPSink(refuse_recipient="550 5.1.1 no such user") as sink:
        smtp_rt = with_smtp(rt, sink.url())
        mail_id = await enqueue(smtp_rt)
        async with delivering(smtp_rt):

            async def is_dead() -> bool:
                return (await row(rt, mail_id))["status"] == "dead"

            await eventually(is_dead)
        assert sink.connections == 1
    job = await job_of(rt, mail_id)
    assert (job["status"], job["attempts"]) == ("dead", 1)
    assert "550" in str(job["last_error"])


async def test_two_delivery_loops_send_every_mail_once(rt: Runtime) -> None:
    """Two job workers sending the same mails never send one twice (SKIP LOCKED claims)."""
    async with SMTPSink() as sink:
        smtp_rt = with_smtp(rt, sink.url())
        ids = [await enqueue(smtp_rt, to=f"user{i}@example.com", subject=f"mail {i}") for i in range(12)]
        policy = replace(FAST, concurrency=3)
        async with delivering(smtp_rt, policy), delivering(smtp_rt, policy):
            await sink.wait_for(lambda: len(sink.messages) >= len(ids), WAIT)
            await asyncio.sleep(0.1)  # a duplicate would arrive now
        subjects = sorted(m["Subject"] for m in sink.messages)
        assert subjects == sorted(f"mail {i}" for i in range(12))
        assert len({m["Message-ID"] for m in sink.messages}) == 12
        async with rt.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM mail_outbox WHERE status = 'sent'") == 12


async def test_a_new_mail_wakes_an_idle_loop(rt: Runtime) -> None:
    """A mail committed while the worker sleeps is sent right away, not at the next poll."""
    async with SMTPSink() as sink:
        smtp_rt = with_smtp(rt, sink.url())
        async with delivering(smtp_rt, replace(FAST, poll_interval=30)):
            await asyncio.sleep(0.2)  # the loop has found nothing and sleeps
            started = asyncio.get_running_loop().time()
            await enqueue(smtp_rt)
            await sink.wait_for(lambda: sink.messages, WAIT)
            assert asyncio.get_running_loop().time() - started < 5


def test_smtp_urls_are_parsed_and_checked() -> None:
    """smtp:// and smtps:// URLs give host, port, TLS and (unquoted) credentials; anything else is refused."""
    plain = mail.SMTPServer.from_url("smtp://user%40x:p%2Fw@mail.example.com:2525")
    assert plain == mail.SMTPServer("mail.example.com", 2525, False, "user@x", "p/w")
    assert mail.SMTPServer.from_url("smtps://mail.example.com") == mail.SMTPServer(
        "mail.example.com", 465, True
    )
    assert mail.SMTPServer.from_url("smtp://mail.example.com").port == 25
    for bad in ("http://mail.example.com", "smtp://", "smtp://host:notaport"):
        with pytest.raises(ConfigError):
            mail.SMTPServer.from_url(bad)
