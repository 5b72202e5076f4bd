"""Helpers for the refund tests: many paid orders at once, real `seatmap worker` processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.support import TIMEOUT_FACTOR, User, logged_in, process_environ, quick_users

ROOT: Final = Path(__file__).resolve().parent.parent

# What checkout writes for a paid web order (orders.py, payments.py, tickets.py) and what the
# simulated gateway keeps on its side (simulated.py), for many orders in one statement: one
# seat each, at its own price so a refund of the wrong order's amount shows.
PAID_ORDERS: Final = """
WITH d AS (
    SELECT * FROM unnest($2::bigint[], $3::text[], $4::bigint[])
        WITH ORDINALITY AS d (user_id, seat, price, n)
), o AS (
    INSERT INTO orders (user_id, screening_id, hold_token, status, currency, total, expires_at, paid_at,
                        seats_published)
    SELECT d.user_id, $1, $1::bigint::text || '.bulk' || $5::text || d.n, 'paid', 'IDR', d.price,
           now(), now(), true
    FROM d ORDER BY d.n
    RETURNING id, hold_token
), od AS (
    SELECT o.id, d.* FROM o JOIN d ON o.hold_token = $1::bigint::text || '.bulk' || $5::text || d.n
), l AS (
    INSERT INTO order_lines (order_id, position, seat_label, category, price)
    SELECT id, 0, seat, 'standard', price FROM od
), g AS (
    INSERT INTO simulated_payments (id, reference, amount, currency, status, webhook_url, return_url,
                                    expires_at, decided_at)
    SELECT 'sim_bulk_' || $5::text || id, id::text, price, 'IDR', 'paid', 'http://127.0.0.1/none',
           'http://127.0.0.1/none', now() + interval '1 hour', now()
    FROM od
), p AS (
    INSERT INTO payments (order_id, provider, provider_ref, amount, currency, status)
    SELECT id, 'simulated', 'sim_bulk_' || $5::text || id, price, 'IDR', 'paid' FROM od
), t AS (
    INSERT INTO tickets (code, order_id, screening_id, seat_label, category, price)
    SELECT md5(random()::text || id), id, $1, seat, 'standard', price FROM od
)
SELECT id, seat, price FROM od ORDER BY n
"""


@dataclass(frozen=True)
class PaidOrder:
    id: int
    buyer: User  # with an access token
    seat: str
    price: int

    @property
    def user_id(self) -> int:
        return self.buyer.id


async def seat_labels(rt: Runtime, screening: int) -> list[str]:
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT label FROM seats WHERE auditorium_id = (SELECT auditorium_id FROM screenings"
            " WHERE id = $1) ORDER BY y, x",
            screening,
        )
    return [r["label"] for r in rows]


async def paid_orders(rt: Runtime, screening: int, n: int, *, first_seat: int = 0) -> list[PaidOrder]:
    """n paid web orders of one seat each (seats in layout order), by n distinct customers."""
    users = await quick_users(rt, n)
    seats = (await seat_labels(rt, screening))[first_seat : first_seat + n]
    assert len(seats) == n, "the hall is too small"
    prices = [10_000 + 100 * i for i in range(n)]
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            PAID_ORDERS, screening, [u.id for u in users], seats, prices, uuid.uuid4().hex[:8]
        )
    by_seat = {r["seat"]: r for r in rows}
    return [
        PaidOrder(by_seat[seat]["id"], user, seat, by_seat[seat]["price"])
        for user, seat in zip(users, seats, strict=True)
    ]


def worker_environ(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a worker process on the test's databases, with fast retries."""
    fast = {
        "SEATMAP_JOB_BACKOFF": "0.05",
        "SEATMAP_JOB_MAX_BACKOFF": "0.3",
        "SEATMAP_JOB_POLL_INTERVAL": "0.2",
        "SEATMAP_JOB_MAX_ATTEMPTS": "40",
        "SEATMAP_REFUND_TIMEOUT": "0.3",
    }
    return process_environ(settings, **{**fast, **extra})


class WorkerProcess:
    """A `python -m seatmap worker` subprocess whose log goes to a file (it can be long)."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log_path = log

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_line(self, text: str, within: float = 30.0) -> None:
        async with asyncio.timeout(within * TIMEOUT_FACTOR):
            while text not in self.log:
                if self.process.returncode is not None:
                    raise AssertionError(f"the worker ended before saying {text!r}:\n{self.log}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no chance to finish or give anything back."""
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15 * TIMEOUT_FACTOR):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def worker(settings: Settings, log: Path, **extra: str) -> AsyncIterator[WorkerProcess]:
    """A real worker process; killed at the end if it is still running."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "seatmap", "worker",
            cwd=ROOT, env=worker_environ(settings, **extra),
            stdout=asyncio.subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    handle = WorkerProcess(process, log)
    try:
        await handle.wait_for_line("worker running jobs")
        yield handle
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20.0) -> Any:
    """Poll until `check()` returns something truthy; return it."""
    async with asyncio.timeout(within * TIMEOUT_FACTOR):
        while not (result := await check()):  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.05)
    return result


async def count(rt: Runtime, sql: str, *args: Any) -> int:
    async with rt.pool.acquire() as conn:
        found: int = await conn.fetchval(sql, *args)
    return found


async def cancel_screening(client: httpx.AsyncClient, rt: Runtime, screening: int) -> dict[str, int]:
    """An admin cancels the screening over the API (202)."""
    admin = await logged_in(rt, client, "admin")
    r = await client.post(
        f"/api/admin/screenings/{screening}/cancel", json={"reason": "Flooded hall"}, headers=admin.headers
    )
    assert r.status_code == 202, r.text
    result: dict[str, int] = r.json()
    return result


async def refunded(rt: Runtime) -> int:
    return await count(rt, "SELECT count(*) FROM refunds WHERE status = 'succeeded'")


async def all_jobs_done(rt: Runtime) -> bool:
    """True once every job is done; a dead one fails the test at once, with its error."""
    async with rt.pool.acquire() as conn:
        dead = await conn.fetch("SELECT kind, attempts, last_error FROM jobs WHERE status = 'dead'")
        left: int = await conn.fetchval("SELECT count(*) FROM jobs WHERE status <> 'done'")
    assert not dead, f"dead jobs: {[dict(r) for r in dead]}"
    return left == 0


async def assert_each_refunded_exactly_once(rt: Runtime, paid: list[PaidOrder]) -> None:
    """The gateway's own ledger: one refund per order, of its amount; our side agrees."""
    async with rt.pool.acquire() as conn:
        ledger = await conn.fetch(
            "SELECT sp.reference::bigint AS order_id, sp.amount, count(sr.id) AS refunds,"
            " coalesce(sum(sr.amount), 0) AS refunded, min(sr.id) AS refund_id"
            " FROM simulated_payments sp LEFT JOIN simulated_refunds sr ON sr.payment_id = sp.id"
            " GROUP BY sp.id"
        )
        ours = await conn.fetch(
            "SELECT r.order_id, r.status, r.provider_refund_id, o.status AS order_status,"
            " (SELECT count(*) FROM tickets t WHERE t.order_id = o.id AND t.status = 'valid') AS live"
            " FROM refunds r JOIN orders o ON o.id = r.order_id"
        )
    expected = {p.id: p.price for p in paid}
    assert {r["order_id"]: (r["refunds"], r["refunded"]) for r in ledger} == {
        order: (1, price) for order, price in expected.items()
    }
    gateway_ids = {r["order_id"]: r["refund_id"] for r in ledger}
    assert len(ours) == len(paid)
    for row in ours:
        assert (row["status"], row["order_status"], row["live"]) == ("succeeded", "refunded", 0), dict(row)
        assert row["provider_refund_id"] == gateway_ids[row["order_id"]]


async def refunded_at_least(rt: Runtime, n: int) -> bool:
    return await refunded(rt) >= n
