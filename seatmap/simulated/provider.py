"""The simulated payment gateway: a stand-in for a real one that behaves like one.

It keeps its own ledger in tables only it touches (`simulated_payments`, `simulated_refunds`),
serves the buyer a payment page on our server (`GET /pay/{id}`, with Approve and Decline
buttons) and tells the merchant (us) the outcome with webhooks over real HTTP, signed exactly
as a real gateway's would be. Settings make it misbehave the ways real gateways do: decline
every payment, deliver each webhook several times at once, send a payment's events in the
wrong order, or late; it retries a delivery that failed, with back-off, until the merchant takes
it, across restarts (outbox.py). Refunds are keyed by
the merchant's idempotency key and remembered, like a real gateway's: the same key again returns
the refund already made and moves no more money. Refunds can be made to fail (before any money
moves) or to lose their answer (the money moved, the caller times out), and every call can take
`simulated_latency` seconds, so the merchant's retries are exercised for real.

It is the provider a deployment runs until it plugs in a real one (gateway.PaymentProvider),
like hostedapi's in-app GitHub fake: the only thing faked is the outside party.
"""

from __future__ import annotations

import asyncio
import html
import random
import secrets
import time
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from seatmap.api import documented
from seatmap.db import Pool
from seatmap.errors import Conflict, IdempotencyKeyReused, NotFound, Unavailable
from seatmap.money import format_amount
from seatmap.runtime import runtime
from seatmap.sales.gateway import (
    CreatedPayment,
    PaymentData,
    Refund,
    WebhookEvent,
    verify_event,
    webhook_key,
)
from seatmap.settings import Settings
from seatmap.simulated.outbox import LEASE, Outbox

TAGS: Final = ("simulated gateway",)

CREATE: Final = """
INSERT INTO simulated_payments
    (id, reference, amount, currency, description, webhook_url, return_url, expires_at, time_zone)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
GET: Final = "SELECT *, expires_at <= now() AS lapsed FROM simulated_payments WHERE id = $1"
# The decision and the webhooks it causes, in one statement: both are written, or neither.
DECIDE: Final = """
WITH decided AS (
    UPDATE simulated_payments SET status = $2, decided_at = now()
    WHERE id = $1 AND status = 'open' AND expires_at > now() RETURNING *
), queued AS (
    INSERT INTO simulated_webhooks (payment_id, url, body, due_at)
    SELECT d.id, d.webhook_url, b.body, now() + make_interval(secs => $4)
    FROM decided d, unnest($3::bytea[]) WITH ORDINALITY AS b(body, n) ORDER BY b.n
    RETURNING id
)
SELECT d.*, (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM queued) AS webhooks FROM decided d
"""
LOCK_PAYMENT: Final = "SELECT id, amount, status FROM simulated_payments WHERE id = $1 FOR UPDATE"
# After the payment's lock (a new statement, so refunds committed meanwhile are seen): the refund
# made with this key before, if any, and how much of the payment is refunded already.
FIND_REFUND: Final = """
SELECT r.id, r.payment_id, r.amount,
       (SELECT coalesce(sum(amount), 0) FROM simulated_refunds WHERE payment_id = $1) AS refunded
FROM (VALUES (1)) AS one LEFT JOIN simulated_refunds r ON r.idempotency_key = $2
"""
INSERT_REFUND: Final = """
INSERT INTO simulated_refunds (id, payment_id, idempotency_key, amount) VALUES ($1, $2, $3, $4)
"""
_encoder = msgspec.json.Encoder()


class SimulatedGateway:
    """A `PaymentProvider`. One per process, opened and closed by `open_runtime`; `start` runs its
    webhook pump (`start`, called by the processes that serve and work)."""

    name = "simulated"

    def __init__(self, pool: Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.key = webhook_key(settings)
        self.outbox = Outbox(pool, self.key, copies=settings.simulated_webhook_copies)

    def start(self) -> None:
        self.outbox.start()

    async def aclose(self) -> None:
        await self.outbox.aclose()

    # -- the provider interface ---------------------------------------------------------------

    async def create_payment(
        self, *, reference: str, amount: int, currency: str, description: str, expires_at: datetime,
        notify_url: str, return_url: str, time_zone: str,
    ) -> CreatedPayment:  # fmt: skip
        if self.settings.simulated_latency > 0:
            await asyncio.sleep(self.settings.simulated_latency)
        payment_id = f"sim_{secrets.token_urlsafe(16)}"
        notify = self.settings.simulated_webhook_url or notify_url
        async with self.pool.acquire() as conn:
            await conn.execute(
                CREATE, payment_id, reference, amount, currency, description, notify, return_url, expires_at,
                time_zone,
            )  # fmt: skip
        # Its pages are served by our server, at our public address (never one from a request).
        return CreatedPayment(
            provider_ref=payment_id, redirect_url=f"{self.settings.base_url}/pay/{payment_id}"
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        return verify_event(self.key, headers, body, self.settings.webhook_tolerance)

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> Refund:
        s = self.settings
        if s.simulated_latency > 0:
            await asyncio.sleep(s.simulated_latency)
        roll = random.random()
        if roll < s.simulated_refund_failure_rate:
            raise Unavailable(
                "The payment gateway failed to refund (simulated failure); nothing was refunded."
            )
        done = await self._refund(provider_ref, amount, idempotency_key)
        if roll < s.simulated_refund_failure_rate + s.simulated_refund_timeout_rate:
            # The money moved but the answer is lost: the caller gives up waiting first.
            await asyncio.sleep(s.refund_timeout + 1.0)
            raise TimeoutError("the payment gateway's answer was lost (simulated)")
        return done

    async def _refund(self, provider_ref: str, amount: int, idempotency_key: str) -> Refund:
        async with self.pool.acquire() as conn, conn.transaction():
            payment = await conn.fetchrow(LOCK_PAYMENT, provider_ref)
            if payment is None:
                raise NotFound("The gateway knows no such payment.")
            prior = await conn.fetchrow(FIND_REFUND, provider_ref, idempotency_key)
            assert prior is not None
            if prior["id"] is not None:
                if prior["payment_id"] != provider_ref or prior["amount"] != amount:
                    raise IdempotencyKeyReused()
                return Refund(id=prior["id"], payment_id=provider_ref, amount=amount, replayed=True)
            if payment["status"] != "paid":
                raise Conflict("Only a paid payment can be refunded.")
            if amount <= 0 or prior["refunded"] + amount > payment["amount"]:
                raise Conflict("That is more than is left to refund.")
            refund_id = f"sim_re_{secrets.token_urlsafe(12)}"
            await conn.execute(INSERT_REFUND, refund_id, provider_ref, idempotency_key, amount)
        return Refund(id=refund_id, payment_id=provider_ref, amount=amount, replayed=False)

    # -- the buyer's decision and the webhooks it causes ---------------------------------------

    async def decide(self, payment_id: str, approve: bool) -> Any:
        """Record the buyer's choice (final; a configured decline wins) and tell the merchant.

        The events are written with the decision (outbox.py) and, unless they are
        configured to come late, delivered before the buyer's page answers, so the order is
        settled when they return. Returns the decided row, or None if the payment was already
        decided or has expired.
        """
        status = "paid" if approve and not self.settings.simulated_decline else "declined"
        delay = self.settings.simulated_webhook_delay
        async with self.pool.acquire() as conn:
            current = await conn.fetchrow(GET, payment_id)
            if current is None or current["status"] != "open" or current["lapsed"]:
                return None
            bodies = self.events(current, status)
            row = await conn.fetchrow(DECIDE, payment_id, status, bodies, delay if delay > 0 else LEASE)
        if row is None:
            return None  # decided by someone else meanwhile, or expired
        if delay <= 0:
            await self.outbox.deliver_now(row["webhook_url"], list(zip(row["webhooks"], bodies, strict=True)))
        return row

    def events(self, row: Any, status: str) -> list[bytes]:
        """The webhook bodies for a payment decided `status`, in the order this gateway sends them."""
        data = PaymentData(
            payment_id=row["id"], reference=row["reference"], amount=row["amount"], currency=row["currency"]
        )
        now = int(time.time())
        final = "payment.paid" if status == "paid" else "payment.declined"
        kinds = [final]
        if self.settings.simulated_out_of_order:
            # A real gateway reports "processing" first; this one lets it arrive after the outcome.
            kinds = [final, "payment.processing"]
        return [
            _encoder.encode(
                WebhookEvent(id=f"evt_{secrets.token_urlsafe(12)}", type=kind, created=now, data=data)
            )
            for kind in kinds
        ]


# ---- the payment page -----------------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    # In the product's own stylesheet and landmarks (served beside it); it stands in for a
    # provider's page, so it says that it is a simulation.
    return HTMLResponse(
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)} · seatmap</title>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<link rel=icon href='data:,'><link rel=stylesheet href='/css/seatmap.css'>"
        "<body class=pay-page><header class=topbar><span class=brand>"
        "<span class=brand-mark aria-hidden=true>▦</span> seatmap</span>"
        "<span class='badge'>Simulated payment provider</span></header>"
        f"<main id=main><section class='panel pay-panel'><h1>{html.escape(title)}</h1>"
        + body
        + "</section></main></body></html>",
        status_code=status,
    )


def _zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def deadline_words(expires_at: datetime, time_zone: str | None) -> str:
    """ "19:42 on Mon 7 Dec 2026, Jakarta time (UTC+07:00)": the cinema's wall clock, which is
    what its tickets and the seat map say; UTC when the payment names no cinema. Pure."""
    zone = _zone(time_zone)
    local = expires_at.astimezone(zone or UTC)
    offset = local.strftime("%z")
    where = "UTC" if zone is None else f"{str(zone).rsplit('/', 1)[-1].replace('_', ' ')} time"
    if zone is not None:
        where += f" (UTC{offset[:3]}:{offset[3:]})"
    return f"{local:%H:%M} on {local:%a} {local.day} {local:%b %Y}, {where}"


def _deadline(expires_at: datetime, time_zone: str | None) -> str:
    zone = _zone(time_zone) or UTC
    iso = html.escape(expires_at.astimezone(zone).isoformat(timespec="seconds"), quote=True)
    return f"<time datetime='{iso}'>{html.escape(deadline_words(expires_at, time_zone))}</time>"


def _gateway(request: Request) -> SimulatedGateway:
    gateway = runtime(request).provider
    if not isinstance(gateway, SimulatedGateway):
        raise NotFound("The simulated gateway is not in use.")
    return gateway


async def _row(request: Request) -> Any:
    async with runtime(request).pool.acquire() as conn:
        return await conn.fetchrow(GET, str(request.path_params["id"]))


@documented(
    "The simulated gateway's payment page (HTML): Approve or Decline",
    responses={200: "text/html", 404: "text/html"},
    tags=TAGS,
)
async def payment_page(request: Request) -> Response:
    _gateway(request)
    row = await _row(request)
    if row is None:
        return _page("Unknown payment", "<p>There is no such payment.</p>", 404)
    amount = html.escape(format_amount(row["amount"], row["currency"]))
    what = f"<p>{html.escape(row['description'])}</p>"
    what += f"<p class=total><span>Total</span><strong>{amount}</strong></p>"
    back = f"<p><a href='{html.escape(row['return_url'], quote=True)}'>Back to the shop</a></p>"
    if row["status"] != "open":
        return _page(
            "Payment " + row["status"], what + f"<p>This payment is <b>{row['status']}</b>.</p>" + back
        )
    if row["lapsed"]:
        return _page("Payment expired", what + "<p>This payment has expired.</p>" + back)
    pid = html.escape(row["id"], quote=True)
    return _page(
        "Pay",
        what
        + f"<p class=expiry>Pay before {_deadline(row['expires_at'], row['time_zone'])}.</p>"
        + "<div class=actions>"
        + f"<form method=post action='/pay/{pid}/approve'><button class=primary>Approve</button></form>"
        + f"<form method=post action='/pay/{pid}/decline'><button class=secondary>Decline</button></form>"
        + "</div>",
    )


async def _decide(request: Request, approve: bool) -> Response:
    gateway = _gateway(request)
    payment_id = str(request.path_params["id"])
    row = await gateway.decide(payment_id, approve)
    if row is None:
        current = await _row(request)
        if current is None:
            return _page("Unknown payment", "<p>There is no such payment.</p>", 404)
        return _page("Too late", f"<p>This payment is already {current['status']} or has expired.</p>", 409)
    return RedirectResponse(f"/pay/{payment_id}", status_code=303)


@documented(
    "Simulated gateway: the buyer approves the payment (303 to the page)",
    responses={303: None, 404: "text/html", 409: "text/html"},
    tags=TAGS,
)
async def approve(request: Request) -> Response:
    return await _decide(request, True)


@documented(
    "Simulated gateway: the buyer declines the payment (303 to the page)",
    responses={303: None, 404: "text/html", 409: "text/html"},
    tags=TAGS,
)
async def decline(request: Request) -> Response:
    return await _decide(request, False)


routes: list[BaseRoute] = [
    Route("/pay/{id}", payment_page, methods=["GET"]),
    Route("/pay/{id}/approve", approve, methods=["POST"]),
    Route("/pay/{id}/decline", decline, methods=["POST"]),
]
