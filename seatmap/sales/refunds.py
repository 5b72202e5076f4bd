"""Refunds: money we owe back, returned through the gateway by the worker, exactly once.

A refund is a row (`refunds`, at most one per payment) and a `refund` job, written in the
transaction that decides the money goes back: a screening cancelled (cancellations.py), a
customer refunding their order (`POST /api/orders/{id}/refund`, below), or a payment that
checkout could not turn into tickets (late, seats gone, paid twice: `payments.needs_refund`).

The job calls the provider's `refund` with an idempotency key derived from the refund's id.
Whatever happens between that call and our commit (a timeout, a crash, kill -9), the job runs
again with the same key and the gateway answers with the refund it already made instead of
paying twice. Failures are retried with back-off by the job outbox and end `dead`, with the
last error, where an admin sees them and can retry (refund_admin.py). On success one
transaction marks the refund succeeded, the order refunded, its tickets void, and queues the
customer's notification; then the order's seats are freed in Redis.

Which seats are freed is decided by PostgreSQL, never by a Redis marker alone (invariant 5):
the order's seats that no live ticket holds now (`RELEASABLE`), and of those, in Redis, only
the ones still sold to this very order (restock.lua `free`). The customer's refund frees them at
once and the job frees them again when the money is back; between the two, or after Redis was
restarted and rebuilt from PostgreSQL, the seats may have been sold to someone else, and then
the second run leaves them sold.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Final

from prometheus_client import Counter
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap import jobs
from seatmap.accounts.auth import require
from seatmap.api import documented, path_int, respond
from seatmap.db import AnyConnection
from seatmap.errors import AlreadyUsed, Forbidden, NotFound, OrderClosed, RefundClosed
from seatmap.runtime import Runtime, runtime
from seatmap.sales import notifications, webhooks
from seatmap.sales.orders import Order, visible_order
from seatmap.settings import Settings

log = logging.getLogger("seatmap.sales.refunds")

JOB: Final = "refund"
# Payments taken at the counter go back at the counter: nothing for a gateway to do.
COUNTER_METHODS: Final = frozenset({"cash", "card_present"})

outcomes: Final = Counter(
    "seatmap_refunds_total",
    "Refund attempts by outcome: succeeded (the gateway returned the money), manual (to return at "
    "the counter), failed (the gateway refused or did not answer; retried by the job outbox).",
    ["outcome"],
)


def job_key(refund_id: int) -> str:
    """The dedupe key of a refund's job: one job per refund, found again by this key."""
    return f"refund:{refund_id}"


def idempotency_key(refund_id: int) -> str:
    """What the gateway dedupes on: the same refund always sends the same key."""
    return f"seatmap-refund-{refund_id}"


# ---- making refunds (in the caller's transaction) ---------------------------------------------

# Money that arrived but will not become tickets, not yet on its way back: the payment marked
# by checkout ($1), or (NULL) any such payment, as the worker's safety net.
REFUND_UNUSED_PAYMENTS: Final = """
INSERT INTO refunds (order_id, payment_id, amount, currency, reason, closes_order)
SELECT p.order_id, p.id, p.amount, p.currency, coalesce(p.refund_reason, 'payment_not_used'), false
FROM payments p
WHERE p.needs_refund AND p.status = 'paid' AND ($1::bigint IS NULL OR p.id = $1)
  AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id)
ORDER BY p.id LIMIT 500
ON CONFLICT (payment_id) DO NOTHING
RETURNING id
"""
# A customer's refund: the order and its tickets, locked, with what the policy needs.
LOCK_FOR_REFUND: Final = """
SELECT o.id, o.user_id, o.status, o.screening_id, s.starts_at, now() AS now,
       EXISTS (SELECT 1 FROM tickets t WHERE t.order_id = o.id AND t.checked_in_at IS NOT NULL) AS used
FROM orders o JOIN screenings s ON s.id = o.screening_id
WHERE o.id = $1
FOR UPDATE OF o
"""
# The order leaves `paid`, its tickets are void at once (the seats can be sold again), and the
# payment that paid it gets its refund row.
REFUND_ORDER: Final = """
WITH o AS (
    UPDATE orders SET status = 'refund_pending', closed_at = now() WHERE id = $1 AND status = 'paid'
    RETURNING id
), t AS (
    UPDATE tickets SET status = 'void', voided_at = now() FROM o
    WHERE tickets.order_id = o.id AND tickets.status = 'valid'
)
INSERT INTO refunds (order_id, payment_id, amount, currency, reason, closes_order, requested_by)
SELECT p.order_id, p.id, p.amount, p.currency, $2, true, $3
FROM o JOIN payments p ON p.order_id = o.id AND p.status = 'paid' AND NOT p.needs_refund
ORDER BY p.id LIMIT 1
RETURNING id
"""


async def queue(conn: AnyConnection, settings: Settings, refund_ids: list[int]) -> int:
    """Queue the job of each refund (in the caller's transaction); one statement."""
    return await jobs.enqueue_many(
        conn,
        JOB,
        [{"refund_id": refund_id} for refund_id in refund_ids],
        [job_key(refund_id) for refund_id in refund_ids],
        max_attempts=settings.job_max_attempts,
    )


async def refund_unused_payments(
    conn: AnyConnection, settings: Settings, payment_id: int | None = None
) -> list[int]:
    """Refund money that will not become tickets, in the caller's transaction: one payment
    (checkout calls this in the transaction that marks it `needs_refund`), or every such payment
    without a refund yet (the worker's safety net)."""
    ids = [r["id"] for r in await conn.fetch(REFUND_UNUSED_PAYMENTS, payment_id)]
    await queue(conn, settings, ids)
    return ids


# ---- the job ----------------------------------------------------------------------------------

TO_RUN: Final = """
SELECT r.id, r.order_id, r.amount, r.currency, r.status, r.reason, r.closes_order, p.provider, p.provider_ref,
       o.user_id, o.screening_id
FROM refunds r JOIN payments p ON p.id = r.payment_id JOIN orders o ON o.id = r.order_id
WHERE r.id = $1
"""
# The whole outcome in one statement: refund done, payment settled, order refunded, tickets void.
COMPLETE: Final = """
WITH r AS (
    UPDATE refunds SET status = $2, provider_refund_id = $3, completed_at = now()
    WHERE id = $1 AND status = 'pending'
    RETURNING id, order_id, payment_id, closes_order
), p AS (
    UPDATE payments SET needs_refund = false, updated_at = now() FROM r WHERE payments.id = r.payment_id
), o AS (
    UPDATE orders SET status = 'refunded', closed_at = coalesce(closed_at, now()) FROM r
    WHERE orders.id = r.order_id AND r.closes_order AND orders.status IN ('paid', 'refund_pending')
), t AS (
    UPDATE tickets SET status = 'void', voided_at = now() FROM r
    WHERE tickets.order_id = r.order_id AND r.closes_order AND tickets.status = 'valid'
)
SELECT count(*) FROM r
"""


async def run_refund(rt: Runtime, job: jobs.Job) -> None:
    """The `refund` job. Raises (and is retried) until the gateway confirms the refund."""
    refund_id = int(job.payload["refund_id"])
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(TO_RUN, refund_id)
    if row is None:
        raise LookupError(f"refund {refund_id} does not exist")
    if row["status"] == "pending":
        try:
            status, provider_refund = await _return_money(rt, row)
        except Exception:
            outcomes.labels("failed").inc()
            raise
        async with rt.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(COMPLETE, refund_id, status, provider_refund):
                outcomes.labels(status).inc()
                log.info(
                    "refund %d of order %d: %d %s %s (%s)", refund_id, row["order_id"], row["amount"],
                    row["currency"], "returned" if status == "succeeded" else "to return at the counter",
                    provider_refund,
                )  # fmt: skip
                refunded = {
                    "refund_id": refund_id, "order_id": row["order_id"], "screening_id": row["screening_id"],
                    "amount": row["amount"], "currency": row["currency"], "reason": row["reason"],
                    "status": status, "provider_refund_id": provider_refund,
                }  # fmt: skip
                if row["closes_order"]:  # an order that was paid; not money that never became one
                    await webhooks.emit(
                        conn, rt.settings, "order.refunded", refunded, screening_id=row["screening_id"]
                    )
                if row["user_id"] is not None:
                    await notifications.notify(
                        conn, rt.settings, "refund_done", user_id=row["user_id"], order_id=row["order_id"],
                        refund_id=refund_id,
                    )  # fmt: skip
    if row["closes_order"]:
        # Also when the refund was done by an earlier run that died before this step.
        await free_seats(rt, row["order_id"])


async def _return_money(rt: Runtime, row: Any) -> tuple[str, str | None]:
    """('succeeded', the gateway's refund id), or ('manual', None) for money taken at the counter."""
    if row["provider"] in COUNTER_METHODS:
        return "manual", None
    if row["amount"] == 0:
        return "succeeded", None
    provider = rt.provider
    if row["provider"] != provider.name:
        raise LookupError(f"the payment was made with {row['provider']!r}, which is not configured here")
    timeout = rt.settings.refund_timeout
    try:
        async with asyncio.timeout(timeout):
            done = await provider.refund(row["provider_ref"], row["amount"], idempotency_key(row["id"]))
    except TimeoutError:
        # The gateway may have refunded and its answer got lost: the retry's key finds out.
        raise TimeoutError(f"the payment gateway did not answer within {timeout:g} s") from None
    if done.replayed:
        log.info("refund %s was already made at the gateway (%s); recording it", row["id"], done.id)
    return "succeeded", done.id


# What a closed order gives back, decided here: its seats that no live ticket holds (its own
# are void; another order's may be live, if the seat was sold again since), and its GA units.
RELEASABLE: Final = """
SELECT o.screening_id,
       (SELECT coalesce(array_agg(l.seat_label ORDER BY l.position), '{}') FROM order_lines l
        WHERE l.order_id = o.id AND l.seat_label IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.screening_id = o.screening_id
                          AND t.seat_label = l.seat_label AND t.status = 'valid')) AS seats,
       (SELECT min(ga_area) FROM order_lines WHERE order_id = o.id) AS ga_area,
       (SELECT count(*) FROM order_lines WHERE order_id = o.id AND ga_area IS NOT NULL) AS ga_units
FROM orders o
WHERE o.id = $1 AND o.status IN ('refund_pending', 'refunded')
  AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.order_id = o.id AND t.status = 'valid')
"""


async def free_seats(rt: Runtime, order_id: int) -> None:
    """Show a refunded order's seats free in Redis (a delta to viewers): those PostgreSQL says
    no live ticket holds, and only while Redis still has them sold to this order. Safe to
    repeat, across Redis restarts too.

    A screening whose state is not in Redis needs nothing: it is loaded from PostgreSQL, where
    the tickets are void already.
    """
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(RELEASABLE, order_id)
    if row is None:  # not closed, or a ticket still live: nothing of it is to be freed yet
        return
    ga_area, ga_units = row["ga_area"] or "", row["ga_units"] if row["ga_area"] else 0
    if row["seats"] or ga_units:
        await rt.holds.inventory.free(row["screening_id"], order_id, list(row["seats"]), ga_area, ga_units)


# ---- the customer's refund -------------------------------------------------------------------


@documented(
    "Refund your paid order, until SEATMAP_REFUND_DEADLINE seconds before the start (409 "
    "refund_closed after, with the deadline): the seats go back on sale at once, the money follows",
    responses={202: Order, 404: None, 409: None},
    auth="customer",
    tags=("orders",),
)
async def refund_order(request: Request) -> Response:
    who = await require(request)
    rt = runtime(request)
    order_id = path_int(request, "id")
    async with rt.pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(LOCK_FOR_REFUND, order_id)
            if row is None or not (row["user_id"] == who.user_id or who.has_role("admin")):
                if row is not None and who.has_role("staff"):
                    raise Forbidden("Only the buyer or an admin can refund an order.")
                raise NotFound("No such order.")
            if row["status"] != "paid":
                raise OrderClosed(f"This order is {row['status']}.", status=row["status"])
            deadline = row["starts_at"] - timedelta(seconds=rt.settings.refund_deadline)
            if row["now"] >= deadline:
                raise RefundClosed(
                    f"Refunds for this screening closed at {deadline.isoformat(timespec='seconds')}.",
                    deadline=deadline,
                )
            if row["used"]:
                raise AlreadyUsed("A ticket of this order was already used at the door.")
            refund_id = await conn.fetchval(REFUND_ORDER, order_id, "customer", who.user_id)
            assert refund_id is not None, "a paid order has the payment that paid it"
            await queue(conn, rt.settings, [refund_id])
            await webhooks.seats_freed_event(conn, rt.settings, order_id)
    try:
        await free_seats(rt, order_id)
    except RedisError as exc:
        # The refund job frees them too (decided the same way), so they are not lost.
        log.warning("order %s refunded but its seats not freed in Redis yet: %s", order_id, exc)
    return respond(await visible_order(rt, who, order_id), 202)


routes: list[BaseRoute] = [
    Route("/orders/{id:int}/refund", refund_order, methods=["POST"]),
]
