"""`seatmap worker` as its own process: what it says, what it delivers, how it stops."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from seatmap import mail
from seatmap.runtime import Runtime
from seatmap.settings import Secret, Settings
from tests.smtp import SMTPSink
from tests.support import TIMEOUT_FACTOR

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10 * TIMEOUT_FACTOR


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, text: str) -> None:
        """Read the worker's log until a line contains `text`."""
        assert self.process.stderr is not None
        async with asyncio.timeout(WAIT):
            while True:
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise AssertionError(f"the worker ended before saying {text!r}:\n{self.log}")
                self.lines.append(line.rstrip("\n"))
                if text in line:
                    return

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send the signal, read the rest of the log, return the exit code."""
        self.process.send_signal(signum)
        async with asyncio.timeout(WAIT):
            _, rest = await self.process.communicate()
        self.lines += rest.decode().splitlines()
        assert self.process.returncode is not None
        return self.process.returncode


def worker_environ(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.database_url is not None and settings.redis_url is not None
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEATMAP_")}
    environ.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        SEATMAP_JWT_SECRET=settings.jwt_secret.reveal(),
        SEATMAP_REDIS_PREFIX=settings.redis_prefix,
        SEATMAP_DATA_DIR=str(settings.data_dir),
        SEATMAP_LOG_JSON="0",
        **extra,
    )
    return environ


@asynccontextmanager
async def worker(settings: Settings, **extra: str) -> AsyncIterator[Worker]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "seatmap",
        "worker",
        cwd=ROOT,
        env=worker_environ(settings, **extra),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    handle = Worker(process)
    try:
        yield handle
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_without_smtp_the_worker_runs_jobs_says_mail_is_stored_and_stops_on_sigterm(
    settings: Settings, rt: Runtime
) -> None:
    """Without SMTP the worker runs jobs, says plainly that mail is stored, exits 0 on SIGTERM."""
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO mail_outbox (recipient, subject, body, status)"
            " VALUES ('a@example.com', 's', 'b', 'pending')"
        )
    async with worker(settings) as proc:
        await proc.wait_for_line("worker running jobs (notify, refund, screening_cancelled)")
        await proc.wait_for_line("mail is stored, not sent: SEATMAP_SMTP_URL is not set")
        await proc.wait_for_line("1 mail(s) are pending; set SEATMAP_SMTP_URL")
        assert await proc.stop(signal.SIGTERM) == 0
    assert "worker stopped" in proc.log
    assert "Traceback" not in proc.log


async def test_with_smtp_the_worker_delivers_mail_and_stops_on_sigint(
    settings: Settings, rt: Runtime
) -> None:
    """With SMTP the worker sends pending mail, marks it sent, and exits 0 on SIGINT (Ctrl-C)."""
    async with SMTPSink() as sink:
        with_smtp = replace(settings, smtp_url=Secret(sink.url()))
        async with rt.pool.acquire() as conn:
            mail_id = await mail.enqueue(
                conn, with_smtp, to="ada@example.com", subject="Welcome", body="Hello Ada", user_id=None
            )
        async with worker(settings, SEATMAP_SMTP_URL=sink.url()) as proc:
            await proc.wait_for_line(f"delivering mail through 127.0.0.1:{sink.port}")
            await sink.wait_for(lambda: sink.messages, WAIT)
            await proc.wait_for_line(f"mail #{mail_id} sent")
            assert await proc.stop(signal.SIGINT) == 0
    assert sink.messages[0]["Subject"] == "Welcome"
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM mail_outbox WHERE id = $1", mail_id) == "sent"
    assert "worker stopped" in proc.log
    assert "Traceback" not in proc.log


async def test_a_bad_smtp_url_stops_the_worker_at_once(settings: Settings) -> None:
    """A worker given an SMTP URL it cannot use refuses to start, saying why, with exit code 2."""
    async with worker(settings, SEATMAP_SMTP_URL="http://mail.example.com") as proc:
        async with asyncio.timeout(WAIT):
            _, err = await proc.process.communicate()
    assert proc.process.returncode == 2
    assert "SEATMAP_SMTP_URL must look like smtp://" in err.decode()
