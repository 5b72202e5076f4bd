"""Payments: starting one at the gateway, and what a confirmed payment does.

The provider contract (`PaymentProvider`, its structs, webhook signing) is `gateway.py`; the
provider in use is opened here for the lifespan (`open_provider`).

Webhooks are signed (gateway.py); a bad signature or a stale timestamp is refused (400)
before anything is read or written. Handling is idempotent: each event id is recorded once
(`payment_events`), a payment's status only moves forward, so duplicates, replays and
out-of-order deliveries change nothing twice.

On a verified "paid" event, one PostgreSQL transaction marks the order paid, records the
payment and writes one ticket per line; the partial unique index on live tickets refuses a
seat sold twice. Money that cannot become tickets (the order expired or was cancelled, its
hold was lost, its seats were sold meanwhile, it was paid already, the amount is wrong) is
recorded with `needs_refund` and the reason, and the receipt says `refund_needed`; a refund of
it is queued in the same transaction (refunds.py returns the money). A confirmed booking queues
the buyer's `booking_confirmed` notification in its transaction too.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg
import msgspec
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts.auth import require
from seatmap.api import ascii_int, documented, path_int, respond
from seatmap.errors import (
    NotFound,
    OrderClosed,
    PayloadTooLarge,
    SeatmapError,
    SoldOut,
)
from seatmap.runtime import Runtime, runtime
from seatmap.sales import notifications, refunds, webhooks
from seatmap.sales.gateway import WebhookEvent
from seatmap.sales.orders import Payment
from seatmap.sales.settlement import LIVE_ORDER_COLUMNS, LiveOrder, publish_sold_or_defer
from seatmap.sales.tickets import issue

TAGS: Final = ("payments",)
_MAX_WEBHOOK: Final = 64 * 1024
# Forward-only payment statuses: an event that would move a payment back is stale.
_RANK: Final = {"created": 0, "processing": 1, "declined": 2, "paid": 3}
_STATUS_OF_EVENT: Final = {
    "payment.processing": "processing",
    "payment.paid": "paid",
    "payment.declined": "declined",
}
webhooks_received: Final = Counter(
    "seatmap_webhooks_received_total",
    "Payment webhooks received, by outcome: refused (bad signature, stale, too large, malformed), "
    "duplicate, or the receipt's outcome (paid, processing, declined, refund_needed, stale, …).",
    ["outcome"],
)


# ---- starting a payment ------------------------------------------------------------------------------

PAYABLE: Final = """
SELECT o.id, o.user_id, o.status, o.expires_at <= now() AS lapsed, o.total, o.currency, o.expires_at,
       (SELECT p.id FROM payments p WHERE p.order_id = o.id AND p.status IN ('created', 'processing')
        ORDER BY p.id DESC LIMIT 1) AS open_payment,
       c.timezone
FROM orders o
JOIN screenings s ON s.id = o.screening_id
JOIN auditoriums a ON a.id = s.auditorium_id
JOIN cinemas c ON c.id = a.cinema_id
WHERE o.id = $1
"""
_PAYMENT_COLUMNS: Final = (
    "id, order_id, provider, status, amount, currency, redirect_url, needs_refund, refund_reason"
)
GET_PAYMENT: Final = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE id = $1"
INSERT_PAYMENT: Final = f"""
INSERT INTO payments (order_id, provider, provider_ref, amount, currency, redirect_url)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_PAYMENT_COLUMNS}
"""


@documented(
    "Pay for your pending order: opens a payment at the gateway; send the buyer to its "
    "redirect_url (an open payment is returned again rather than opened twice)",
    responses={200: Payment, 201: Payment, 404: None, 409: None},
    auth="customer",
    tags=TAGS,
)
async def start_payment(request: Request) -> Response:
    who = await require(request)
    rt = runtime(request)
    order_id = path_int(request, "id")
    async with rt.pool.acquire() as conn:
        order = await conn.fetchrow(PAYABLE, order_id)
        if order is None or order["user_id"] != who.user_id:
            raise NotFound("No such order.")
        if order["status"] != "pending" or order["lapsed"]:
            status = "expired" if order["status"] == "pending" else order["status"]
            raise OrderClosed(f"This order is {status}.", status=status)
        if order["open_payment"] is not None:
            return respond(_payment(await conn.fetchrow(GET_PAYMENT, order["open_payment"])))
    # The gateway is another party (the simulated one uses our pool): no connection held meanwhile.
    provider = rt.provider
    # Never request.base_url: its host is the client's Host header (an attacker's, in a link or
    # a rebinding page), and the gateway would send the buyer and the signed webhook there.
    base = rt.settings.base_url
    created = await provider.create_payment(
        reference=str(order_id), amount=order["total"], currency=order["currency"],
        description=f"seatmap order {order_id}", expires_at=order["expires_at"],
        notify_url=f"{base}/api/payments/webhooks/{provider.name}", return_url=f"{base}/?order={order_id}",
        time_zone=order["timezone"],
    )  # fmt: skip
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(
            INSERT_PAYMENT, order_id, provider.name, created.provider_ref, order["total"], order["currency"],
            created.redirect_url,
        )  # fmt: skip
    return respond(_payment(row), 201)


def _payment(row: Any) -> Payment:
    assert row is not None
    return Payment(**dict(row))


# ---- applying a verified event ---------------------------------------------------------------------

LOCK_ORDER: Final = f"SELECT {LIVE_ORDER_COLUMNS} FROM orders o WHERE o.id = $1 FOR UPDATE"
# Read after the order's lock is held, so a concurrent event of the same order is seen done.
SEEN_AND_PAYMENT: Final = """
SELECT (SELECT outcome FROM payment_events WHERE provider = $1 AND event_id = $2) AS seen,
       p.id, p.order_id, p.status
FROM (VALUES (1)) AS one LEFT JOIN payments p ON p.provider = $1 AND p.provider_ref = $3
"""
RECORD_EVENT: Final = """
INSERT INTO payment_events (provider, event_id, type, provider_ref, outcome) VALUES ($1, $2, $3, $4, $5)
"""
NEW_PAYMENT: Final = """
INSERT INTO payments (order_id, provider, provider_ref, amount, currency) VALUES ($1, $2, $3, $4, $5)
RETURNING id, order_id, status
"""
SET_PAYMENT: Final = """
UPDATE payments SET status = $2, needs_refund = $3, refund_reason = $4, updated_at = now() WHERE id = $1
"""
# The order paid, the payment paid and the event recorded, in one statement (after the tickets).
FINISH_PAID: Final = """
WITH o AS (UPDATE orders SET status = 'paid', paid_at = now() WHERE id = $1),
     p AS (UPDATE payments SET status = 'paid', updated_at = now() WHERE id = $2)
INSERT INTO payment_events (provider, event_id, type, provider_ref, outcome) VALUES ($3, $4, $5, $6, 'paid')
"""
CLOSE_ORDER: Final = (
    "UPDATE orders SET status = 'expired', closed_at = now() WHERE id = $1 AND status = 'pending'"
)


class Receipt(msgspec.Struct, kw_only=True):
    """Our answer to a webhook. `outcome`: paid | processing | declined | refund_needed | stale |
    unknown_order | ignored; `duplicate`: this event id was handled before (nothing changed)."""

    event: str
    outcome: str
    duplicate: bool = False
    order_id: int | None = None
    refund_reason: str | None = None


async def _hold_covers(rt: Runtime, order: LiveOrder) -> bool:
    """Is the order's hold still live in Redis with every seat (and GA unit) it was made from?"""
    k = rt.holds.inventory.keys(order.screening_id)
    async with rt.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(k.hold(order.hold_token), ["owner", "area", "qty"])
        pipe.pttl(k.ttl(order.hold_token))
        if order.seats:
            pipe.hmget(k.seats, order.seats)
        found: list[Any] = await pipe.execute()
    (owner, area, qty), ttl = found[0], found[1]
    if owner != str(order.hold_owner) or ttl <= 0:
        return False
    if order.ga is not None and (area != order.ga.area or qty != str(order.ga.quantity)):
        return False
    mark = f"h:{order.hold_token}"
    return not order.seats or all(state == mark for state in found[2])


async def _refusal(rt: Runtime, order: LiveOrder, event: WebhookEvent) -> str | None:
    """Why this payment cannot become tickets, or None when it can."""
    if event.data.amount != order.total or event.data.currency != order.currency:
        return "amount_mismatch"
    if order.status == "paid":
        return "already_paid"
    if order.status == "cancelled":
        return "order_cancelled"
    if order.status == "expired" or order.lapsed:
        return "order_expired"
    if not await _hold_covers(rt, order):
        return "hold_lost"
    return None


async def _apply(
    rt: Runtime, provider: str, event: WebhookEvent, order_id: int | None, *, tickets: bool
) -> tuple[Receipt, LiveOrder | None]:
    """One transaction: the event is recorded with its outcome, or nothing happened at all."""
    receipt = Receipt(event=event.id, outcome="ignored", order_id=order_id)
    async with rt.pool.acquire() as conn, conn.transaction():
        # The order's row lock serialises every event of one order; the event log dedupes.
        row = await conn.fetchrow(LOCK_ORDER, order_id) if order_id is not None else None
        data = event.data
        found = await conn.fetchrow(SEEN_AND_PAYMENT, provider, event.id, data.payment_id)
        assert found is not None
        if found["seen"] is not None:
            return Receipt(event=event.id, outcome=found["seen"], duplicate=True, order_id=order_id), None
        new_status = _STATUS_OF_EVENT.get(event.type)
        if row is None:
            receipt.outcome = "unknown_order"
        elif new_status is not None:
            order = LiveOrder.of(row)
            payment: Any = found if found["id"] is not None else None
            if payment is None:
                payment = await conn.fetchrow(NEW_PAYMENT, order.id, provider, data.payment_id, data.amount,
                                              data.currency)  # fmt: skip
                assert payment is not None
            if payment["order_id"] != order.id:
                receipt.outcome = "ignored"  # the gateway's payment belongs to another order
            elif _RANK[new_status] <= _RANK[payment["status"]]:
                receipt.outcome = "stale"
            elif new_status != "paid":
                await conn.execute(SET_PAYMENT, payment["id"], new_status, False, None)
                receipt.outcome = new_status
            else:
                reason = await _refusal(rt, order, event)
                if reason is None and not tickets:
                    reason = "seats_taken"
                if reason is None:
                    await issue(conn, order.id, order.screening_id, order.lines, _ga(order))
                    await conn.execute(FINISH_PAID, order.id, payment["id"], provider, event.id, event.type,
                                       data.payment_id)  # fmt: skip
                    await webhooks.order_paid_events(conn, rt.settings, order.id)
                    if order.user_id is not None:
                        await notifications.notify(
                            conn, rt.settings, "booking_confirmed", user_id=order.user_id, order_id=order.id
                        )
                    return Receipt(event=event.id, outcome="paid", order_id=order_id), order
                else:
                    await conn.execute(SET_PAYMENT, payment["id"], "paid", True, reason)
                    # The money goes back through the refunds worker (a refund row and its job).
                    await refunds.refund_unused_payments(conn, rt.settings, payment["id"])
                    if reason != "amount_mismatch":  # a wrong amount may still be followed by a right one
                        await conn.execute(CLOSE_ORDER, order.id)
                    receipt.outcome, receipt.refund_reason = "refund_needed", reason
        outcome = (
            receipt.outcome if receipt.refund_reason is None else f"refund_needed:{receipt.refund_reason}"
        )
        await conn.execute(RECORD_EVENT, provider, event.id, event.type, event.data.payment_id, outcome)
    return receipt, None


def _ga(order: LiveOrder) -> dict[str, int]:
    return {order.ga.area: order.ga.quantity} if order.ga is not None else {}


async def apply_event(rt: Runtime, provider: str, event: WebhookEvent) -> Receipt:
    """Apply a verified event exactly once; then, if it sold seats, show them sold in Redis."""
    reference = event.data.reference
    order_id = ascii_int(reference)
    try:
        receipt, sold = await _apply(rt, provider, event, order_id, tickets=True)
    except (asyncpg.UniqueViolationError, SoldOut) as exc:
        # Another sale holds a seat (the PostgreSQL guard) or the GA area is full: nothing of
        # the first attempt was written; record the payment for refund instead. (A duplicate
        # delivery racing us on the event log finds the event recorded and changes nothing.)
        seats_gone = isinstance(exc, SoldOut) or exc.constraint_name == "tickets_one_live_per_seat"
        receipt, sold = await _apply(rt, provider, event, order_id, tickets=not seats_gone)
    if receipt.duplicate and receipt.outcome.startswith("refund_needed:"):
        receipt.outcome, receipt.refund_reason = receipt.outcome.split(":", 1)
    if sold is not None:
        await publish_sold_or_defer(rt, sold)
    return receipt


@documented(
    "Payment webhook of a gateway (signed: Seatmap-Signature: t=<unix>,v1=<HMAC-SHA256 hex of "
    "'<t>.<body>'>); idempotent",
    body=WebhookEvent,
    responses={200: Receipt, 400: None, 404: None},
    tags=TAGS,
)
async def webhook(request: Request) -> Response:
    rt = runtime(request)
    provider = rt.provider
    if request.path_params["provider"] != provider.name:
        raise NotFound("No such payment provider here.")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_WEBHOOK:
                raise PayloadTooLarge()
        event = provider.verify_webhook(request.headers, body)
    except SeatmapError:
        webhooks_received.labels("refused").inc()
        raise
    receipt = await apply_event(rt, provider.name, event)
    webhooks_received.labels("duplicate" if receipt.duplicate else receipt.outcome).inc()
    return respond(receipt)


routes: list[BaseRoute] = [
    Route("/orders/{id:int}/payments", start_payment, methods=["POST"]),
    Route("/payments/webhooks/{provider}", webhook, methods=["POST"]),
]
