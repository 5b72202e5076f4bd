"""The invariants a chaos run must keep, each counted from PostgreSQL, Redis and what viewers saw.

Every function returns a count of violations, so a scenario's verdict is a row of numbers that
must all be 0 (design.md's invariants, as a user or an auditor would check them):

- double-sold: a seat with two valid tickets (the unique index should make it impossible), or a
  payment refunded because its seats were taken: the map sold a seat that was not for sale;
- paid without tickets: a paid order without one valid ticket per line;
- payments adrift: money the gateway took that is neither a paid order nor refunded;
- refunds not once: a payment we refunded (or owe back) that the gateway refunded 0 or 2+
  times, or for another amount;
- diverged viewers: a viewer whose map differs from PostgreSQL's sold seats + Redis's holds;
- seq faults: deltas a viewer received out of sequence (a gap or a duplicate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Final

import asyncpg
import redis.asyncio as aioredis

from bench.crowd import Viewer
from seatmap.live.inventory import Keys

DOUBLE_SOLD: Final = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM tickets WHERE status = 'valid' AND seat_label IS NOT NULL
                              GROUP BY screening_id, seat_label HAVING count(*) > 1) twice)
     + (SELECT count(*) FROM payments WHERE refund_reason = 'seats_taken')
"""
PAID_WITHOUT_TICKETS: Final = """
SELECT count(*) FROM orders o
WHERE o.status = 'paid'
  AND (SELECT count(*) FROM tickets t WHERE t.order_id = o.id AND t.status = 'valid')
      <> (SELECT count(*) FROM order_lines l WHERE l.order_id = o.id)
"""
PAYMENTS_ADRIFT: Final = """
SELECT count(*) FROM simulated_payments sp
WHERE sp.status = 'paid'
  AND NOT EXISTS (SELECT 1 FROM simulated_refunds sr WHERE sr.payment_id = sp.id)
  AND NOT EXISTS (SELECT 1 FROM payments p JOIN orders o ON o.id = p.order_id
                  WHERE p.provider_ref = sp.id AND p.status = 'paid' AND NOT p.needs_refund
                    AND o.status = 'paid')
"""
REFUNDS_NOT_ONCE: Final = """
SELECT count(*) FROM (
    SELECT sp.amount, count(sr.id) AS refunds, coalesce(sum(sr.amount), 0) AS refunded
    FROM simulated_payments sp LEFT JOIN simulated_refunds sr ON sr.payment_id = sp.id
    WHERE EXISTS (SELECT 1 FROM simulated_refunds x WHERE x.payment_id = sp.id)
       OR EXISTS (SELECT 1 FROM refunds r JOIN payments p ON p.id = r.payment_id
                  WHERE p.provider_ref = sp.id AND r.status <> 'manual')
    GROUP BY sp.id, sp.amount
) x WHERE refunds <> 1 OR refunded <> amount
"""
UNSETTLED: Final = """
SELECT (SELECT count(*) FROM refunds WHERE status = 'pending')
     + (SELECT count(*) FROM orders WHERE status = 'paid' AND NOT seats_published)
"""
SOLD_SEATS: Final = """
SELECT seat_label FROM tickets WHERE screening_id = $1 AND status = 'valid' AND seat_label IS NOT NULL
"""


async def double_sold(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(DOUBLE_SOLD)
    return count


async def paid_without_tickets(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(PAID_WITHOUT_TICKETS)
    return count


async def payments_adrift(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(PAYMENTS_ADRIFT)
    return count


async def refunds_not_once(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(REFUNDS_NOT_ONCE)
    return count


async def unsettled(db: asyncpg.Connection) -> int:
    """Work still owed: refunds not made yet, paid orders whose seats Redis does not show sold."""
    count: int = await db.fetchval(UNSETTLED)
    return count


async def expected_map(
    db: asyncpg.Connection, redis: aioredis.Redis, prefix: str, screening: int
) -> dict[str, str]:
    """What every viewer should show: sold where PostgreSQL has a valid ticket (the durable
    truth), held or blocked where Redis says so."""
    raw: dict[str, str] = await redis.hgetall(Keys.of(prefix, screening).seats)  # type: ignore[assignment]
    expected = {seat: "held" for seat, state in raw.items() if state.startswith("h:")}
    expected |= {seat: "blocked" for seat, state in raw.items() if state == "b"}
    expected |= {row["seat_label"]: "sold" for row in await db.fetch(SOLD_SEATS, screening)}
    return expected


async def diverged_viewers(
    db: asyncpg.Connection, redis: aioredis.Redis, prefix: str, viewers: Iterable[Viewer], within: float = 5.0
) -> int:
    """Viewers whose map still differs from the expected one after `within` seconds of quiet
    (a viewer may be a few deltas behind when asked: it gets that long to catch up)."""
    pending = list(viewers)
    deadline = time.monotonic() + within
    while True:
        expected: dict[int, dict[str, str]] = {}
        for screening in {v.screening for v in pending}:
            expected[screening] = await expected_map(db, redis, prefix, screening)
        pending = [v for v in pending if v.seats != expected[v.screening]]
        if not pending or time.monotonic() > deadline:
            return len(pending)
        await asyncio.sleep(0.2)


def seq_faults(viewers: Iterable[Viewer]) -> int:
    return sum(v.gaps + v.duplicates for v in viewers)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def settle(db: asyncpg.Connection, since: float, within: float) -> float | None:
    """Seconds from `since` (the last fault) until every payment is an order or a refund and no
    refund or seat publication is owed: the crash-to-confirmation window. None: not within."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if await payments_adrift(db) == 0 and await unsettled(db) == 0:
                return time.time() - since
        except (OSError, asyncpg.PostgresError):
            pass
        await asyncio.sleep(0.1)
    return None
