"""`seatmap worker` as its own process: what it says, what it delivers, how it stops."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx

from seatmap import jobs, mail
from seatmap.app import create_app
from seatmap.runtime import Runtime
from seatmap.settings import Secret, Settings
from tests import refunding
from tests.conftest import running
from tests.shopping import pending_order, seat_states
from tests.smtp import SMTPSink
from tests.support import (
    TIMEOUT_FACTOR,
    Server,
    free_port,
    logged_in,
    make_screening,
    metric_value,
    process_environ,
)

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


@asynccontextmanager
async def worker(settings: Settings, **extra: str) -> AsyncIterator[Worker]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "seatmap",
        "worker",
        cwd=ROOT,
        env=process_environ(settings, **extra),
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
        await proc.wait_for_line(
            "worker running jobs (alert, mail, notify, refund, screening_cancelled, webhook)"
        )
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


# ---- the jobs and the housekeeping (refunds, order expiry) ------------------------------------


async def test_the_worker_expires_a_lapsed_order_and_releases_its_hold(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """A pending order past its payment window becomes expired and its seats go back on sale."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    made = await pending_order(client, buyer, screening, ["A3", "A4"])
    async with rt.pool.acquire() as conn:
        # The payment window is over; the hold itself would have lived on (extended, say).
        await conn.execute(
            "UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1", made["id"]
        )
    assert await seat_states(rt, screening) == {"A3": "held", "A4": "held"}
    async with refunding.worker(rt.settings, tmp_path / "worker.log"):
        await refunding.eventually(lambda: _order_is(rt, made["id"], "expired"))
        await refunding.eventually(lambda: _no_seats(rt, screening))
    r = await client.post(f"/api/orders/{made['id']}/payments", headers=buyer.headers)
    assert r.status_code == 409


async def _order_is(rt: Runtime, order_id: int, status: str) -> bool:
    async with rt.pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT status = $2 FROM orders WHERE id = $1", order_id, status))


async def _no_seats(rt: Runtime, screening: int) -> bool:
    return await seat_states(rt, screening) == {}


async def test_money_marked_for_refund_without_a_refund_yet_is_refunded_by_the_worker(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """A late payment checkout marked `needs_refund` is refunded once; its order stays expired."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    (order,) = await refunding.paid_orders(rt, screening, 1)
    async with rt.pool.acquire() as conn:
        # What checkout writes for a payment that arrived after its order expired.
        await conn.execute("DELETE FROM tickets WHERE order_id = $1", order.id)
        await conn.execute("UPDATE orders SET status = 'expired', paid_at = NULL WHERE id = $1", order.id)
        await conn.execute(
            "UPDATE payments SET needs_refund = true, refund_reason = 'order_expired' WHERE order_id = $1",
            order.id,
        )
    async with refunding.worker(rt.settings, tmp_path / "worker.log") as proc:
        await refunding.eventually(lambda: _refunded_payment(rt, order.id))
        await proc.wait_for_line("had no refund yet; queued now")
    async with rt.pool.acquire() as conn:
        ledger = await conn.fetch("SELECT amount FROM simulated_refunds")
        row = await conn.fetchrow(
            "SELECT r.reason, r.closes_order, o.status FROM refunds r JOIN orders o ON o.id = r.order_id"
        )
    assert [r["amount"] for r in ledger] == [order.price]
    assert row is not None and tuple(row) == ("order_expired", False, "expired")


async def _refunded_payment(rt: Runtime, order_id: int) -> bool:
    async with rt.pool.acquire() as conn:
        return bool(
            await conn.fetchval(
                "SELECT NOT p.needs_refund AND r.status = 'succeeded' FROM payments p"
                " JOIN refunds r ON r.payment_id = p.id WHERE p.order_id = $1",
                order_id,
            )
        )


async def test_in_dev_mode_the_web_process_runs_the_jobs_itself(settings: Settings, rt: Runtime) -> None:
    """`seatmap serve` in dev mode needs no separate worker: a cancellation's refunds complete."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    paid = await refunding.paid_orders(rt, screening, 3)
    dev = replace(settings, inline_worker=True, job_poll_interval=0.1)
    async with running(create_app(dev)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        admin = await logged_in(rt, client, "admin")
        r = await client.post(
            f"/api/admin/screenings/{screening}/cancel", json={"reason": "x"}, headers=admin.headers
        )
        assert r.status_code == 202
        await refunding.eventually(lambda: _all_refunded(rt, len(paid)))
        r = await client.get("/api/notifications", headers=paid[0].buyer.headers)
        assert {n["kind"] for n in r.json()["items"]} >= {"screening_cancelled"}


async def _all_refunded(rt: Runtime, n: int) -> bool:
    async with rt.pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT count(*) = $1 FROM orders WHERE status = 'refunded'", n))


def test_dev_mode_runs_the_jobs_in_the_web_process_unless_told_otherwise(tmp_path: Path) -> None:
    """Embedded (dev) servers run the jobs inline; a production web process leaves them to workers."""
    dev = Settings.from_environ({"SEATMAP_DATA_DIR": str(tmp_path)})
    production = {
        "DATABASE_URL": "postgresql://db/seatmap",
        "REDIS_URL": "redis://cache",
        "SEATMAP_JWT_SECRET": "s" * 40,
    }
    assert dev.inline_worker is True
    assert Settings.from_environ(production).inline_worker is False
    assert Settings.from_environ({**production, "SEATMAP_INLINE_WORKER": "1"}).inline_worker is True


async def test_the_worker_serves_its_own_job_counters_to_prometheus(rt: Runtime, settings: Settings) -> None:
    """With SEATMAP_WORKER_METRICS_PORT set, the worker's job outcomes can be scraped from it."""
    port = free_port()
    async with rt.pool.acquire() as conn:
        await jobs.enqueue(conn, "mail", max_attempts=1)  # no SMTP here: the attempt fails, dead at once
    async with worker(settings, SEATMAP_WORKER_METRICS_PORT=str(port)) as proc:
        await proc.wait_for_line(f"worker metrics on http://127.0.0.1:{port}/metrics")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as scraper:
            async with asyncio.timeout(WAIT):
                while True:
                    page = (await scraper.get("/metrics")).text
                    if metric_value(page, "seatmap_jobs_total", {"kind": "mail", "outcome": "dead"}) == 1:
                        break
                    await asyncio.sleep(0.05)
        assert await proc.stop() == 0
