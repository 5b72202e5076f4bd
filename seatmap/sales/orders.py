"""Orders: what a customer buys from a hold, from `pending` until it is paid, expires or is cancelled.

`POST /api/orders` turns a live hold into a pending order: exactly the held seats (and GA
units), each at its category's price for that screening, snapshotted with the currency and the
total in integer minor units. The hold is extended to the payment window (never past its
maximum lifetime) and the order lives exactly as long: `expires_at` is the hold's new expiry.
The `Idempotency-Key` header makes a retried request return the same order; the same key with
another body is 422.

Payment confirmation (payments.py) makes an order `paid` in one transaction with its tickets;
sales.py then shows its seats sold in Redis. Pending orders past their window are closed by the
worker (`expire_lapsed`, see docs/topics/refunds.md); until then every read shows them expired.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime
from typing import Annotated, Any, Final

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.accounts.auth import Principal, require
from seatmap.accounts.verification import require_verified
from seatmap.api import (
    INT64_MAX,
    Page,
    Param,
    cursor_id,
    documented,
    encode_cursor,
    int_param,
    path_int,
    query_int,
    read_body,
    respond,
)
from seatmap.db import AnyConnection
from seatmap.errors import (
    AccountGone,
    HoldExpired,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    NotOnSale,
    OrderClosed,
    OrderExists,
)
from seatmap.live.holds import parse_token
from seatmap.live.inventory import Layout
from seatmap.live.protocol import GASelection
from seatmap.money import exponent
from seatmap.runtime import Runtime, runtime
from seatmap.sales.tickets import Ticket

log = logging.getLogger("seatmap.sales.orders")

TAGS: Final = ("orders",)
_KEY: Final = re.compile(r"^[\x21-\x7e]{1,255}$")
IDEMPOTENCY_KEY: Final = Param(
    name="Idempotency-Key", required=True, schema={"type": "string", "pattern": "^[!-~]{1,255}$"}
)

# A name printed on a ticket and read at the door: no control characters (a newline or an
# escape would garble the door list and the CSV export), at most 100 characters.
HolderName = Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]


# ---- wire shapes ----------------------------------------------------------------------------


class OrderRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`holder_names` name the tickets in order: the hold's seats first, then its GA units."""

    hold_token: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    holder_names: Annotated[list[HolderName], msgspec.Meta(max_length=1000)] = []


class OrderLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    category: str
    price: int
    seat: str | None = None
    area: str | None = None
    holder_name: str | None = None


class Payment(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One payment attempt. Send the buyer to `redirect_url` (the gateway's payment page)."""

    id: int
    order_id: int
    provider: str
    status: str  # created | processing | paid | declined
    amount: int
    currency: str
    redirect_url: str | None = None
    needs_refund: bool = False
    refund_reason: str | None = None


class OrderSummary(msgspec.Struct, kw_only=True):
    id: int
    status: str  # pending | paid | expired | cancelled
    screening_id: int
    channel: str
    currency: str
    total: int
    expires_at: datetime
    created_at: datetime
    paid_at: datetime | None
    # Decimal places of `currency` in amounts (money.py), so the browser needs no table of its
    # own; derived from `currency` on every construction and decode, never stored.
    currency_exponent: int = 2

    def __post_init__(self) -> None:
        self.currency_exponent = exponent(self.currency)


class Order(OrderSummary, kw_only=True):
    """An order with its lines, tickets (once paid) and payments. `needs_refund`: money arrived
    that will not become tickets (late, seats gone, paid twice); the refunds worker returns it."""

    lines: list[OrderLine]
    tickets: list[Ticket]
    payments: list[Payment]
    needs_refund: bool


class OrderPage(Page):
    items: list[OrderSummary]


# ---- SQL --------------------------------------------------------------------------------------

# A pending order past its window reads as expired even before the sweeper has written it.
_SUMMARY: Final = """
o.id, CASE WHEN o.status = 'pending' AND o.expires_at <= now() THEN 'expired' ELSE o.status END AS status,
o.screening_id, o.channel, o.currency, o.total, o.expires_at, o.created_at, o.paid_at
"""
_STATUS: Final = "CASE WHEN o.status = 'pending' AND o.expires_at <= now() THEN 'expired' ELSE o.status END"
# The whole order as one JSON document (decoded straight into `Order`): one round trip.
ORDER_DOCUMENT: Final = f"""
SELECT o.user_id, jsonb_build_object(
    'id', o.id, 'status', {_STATUS}, 'screening_id', o.screening_id, 'channel', o.channel,
    'currency', o.currency, 'total', o.total, 'expires_at', o.expires_at, 'created_at', o.created_at,
    'paid_at', o.paid_at,
    'lines', coalesce((
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
            'seat', seat_label, 'area', ga_area, 'category', category, 'price', price,
            'holder_name', holder_name)) ORDER BY position)
        FROM order_lines WHERE order_id = o.id), '[]'),
    'tickets', coalesce((
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
            'code', code, 'screening_id', screening_id, 'seat', seat_label, 'area', ga_area,
            'category', category, 'price', price, 'holder_name', holder_name, 'status', status,
            'checked_in_at', checked_in_at, 'qr_url', '/api/tickets/' || code || '/qr.svg')) ORDER BY id)
        FROM tickets WHERE order_id = o.id), '[]'),
    'payments', coalesce((
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
            'id', id, 'order_id', order_id, 'provider', provider, 'status', status, 'amount', amount,
            'currency', currency, 'redirect_url', redirect_url, 'needs_refund', needs_refund,
            'refund_reason', refund_reason)) ORDER BY id)
        FROM payments WHERE order_id = o.id), '[]'),
    'needs_refund', EXISTS (SELECT 1 FROM payments WHERE order_id = o.id AND needs_refund)
)::text AS doc
FROM orders o WHERE o.id = $1
"""
LIST_ORDERS: Final = f"""
SELECT {_SUMMARY} FROM orders o
WHERE o.user_id = $1 AND o.id < $2 ORDER BY o.id DESC LIMIT $3
"""
FIND_REQUEST: Final = "SELECT request_hash, order_id FROM order_requests WHERE user_id = $1 AND key = $2"
# Prices, and (for an order) whether this idempotency key was used already: one round trip.
PRICING: Final = """
SELECT s.currency, s.holder_names_required,
       coalesce((SELECT jsonb_object_agg(category, amount) FROM screening_prices
                 WHERE screening_id = s.id), '{}') AS prices,
       coalesce((SELECT jsonb_object_agg(name, category) FROM ga_areas
                 WHERE auditorium_id = s.auditorium_id), '{}') AS ga_categories,
       r.request_hash, r.order_id AS request_order
FROM screenings s LEFT JOIN order_requests r ON r.user_id = $2 AND r.key = $3
WHERE s.id = $1
"""
# Order, lines and idempotency key in one statement: all of it is written, or none.
INSERT_ORDER: Final = """
WITH o AS (
    INSERT INTO orders (user_id, screening_id, hold_token, currency, total, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at
), l AS (
    INSERT INTO order_lines (order_id, position, seat_label, ga_area, category, price, holder_name)
    SELECT o.id, t.n - 1, t.seat, t.area, t.category, t.price, t.holder
    FROM o, unnest($7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[])
         WITH ORDINALITY AS t(seat, area, category, price, holder, n)
), r AS (
    INSERT INTO order_requests (user_id, key, request_hash, order_id) SELECT $1, $12, $13, o.id FROM o
)
SELECT id, created_at FROM o
"""
# The foreign keys that name the buyer: violated only when the token's account was deleted.
_BUYER_KEYS: Final = frozenset({"orders_user_id_fkey", "order_requests_user_id_fkey"})
LIVE_ORDER_OF_HOLD: Final = "SELECT id FROM orders WHERE hold_token = $1 AND status IN ('pending', 'paid')"
CANCEL_ORDER: Final = """
UPDATE orders SET status = 'cancelled', closed_at = now()
WHERE id = $1 AND user_id = $2 AND status = 'pending' AND expires_at > now()
RETURNING hold_token
"""
# SKIP LOCKED: an order whose payment is being confirmed right now is left for the next round.
EXPIRE_ORDERS: Final = """
UPDATE orders SET status = 'expired', closed_at = now()
WHERE id IN (SELECT id FROM orders WHERE status = 'pending' AND expires_at <= now()
             ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id, hold_token, coalesce(user_id, sold_by) AS owner
"""


# ---- reading ------------------------------------------------------------------------------------


def _summary(row: Any) -> OrderSummary:
    return OrderSummary(
        id=row["id"], status=row["status"], screening_id=row["screening_id"], channel=row["channel"],
        currency=row["currency"], total=row["total"], expires_at=row["expires_at"],
        created_at=row["created_at"], paid_at=row["paid_at"],
    )  # fmt: skip


_order_decoder: Final = msgspec.json.Decoder(Order)


async def fetch_order(conn: AnyConnection, order_id: int) -> tuple[Order, int | None] | None:
    """The order with lines, tickets and payments, and its buyer's id (None: box office)."""
    row = await conn.fetchrow(ORDER_DOCUMENT, order_id)
    if row is None:
        return None
    return _order_decoder.decode(row["doc"]), row["user_id"]


async def visible_order(
    rt: Runtime, who: Principal, order_id: int, conn: AnyConnection | None = None
) -> Order:
    """The order if `who` bought it, is staff, or organizes its cinema; 404 otherwise (no hint
    that it exists)."""
    if conn is None:
        async with rt.pool.acquire() as own:
            return await visible_order(rt, who, order_id, own)
    found = await fetch_order(conn, order_id)
    if found is None or not (found[1] == who.user_id or await _manages(conn, who, found[0].screening_id)):
        raise NotFound("No such order.")
    return found[0]


async def _manages(conn: AnyConnection, who: Principal, screening_id: int) -> bool:
    if not who.has_role("staff"):
        return False
    visible = scope.visible_cinemas(who)
    return visible is None or await scope.screening_cinema(conn, screening_id) in visible


# ---- creating ---------------------------------------------------------------------------------------


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None or _KEY.match(key) is None:
        raise InvalidInput(
            "Send an Idempotency-Key header (1 to 255 printable characters) with each new order.",
            path="header:Idempotency-Key",
        )
    return key


async def _replay(
    rt: Runtime, conn: AnyConnection, who: Principal, digest: bytes, found: Any
) -> Response | None:
    """The earlier order made with this key (`found`: its request_hash and order), if any."""
    if found is None or found["request_hash"] is None:
        return None
    if found["request_hash"] != digest:
        raise IdempotencyKeyReused()
    order = await visible_order(rt, who, found["request_order"], conn)
    return respond(order, 201, headers={"Idempotent-Replayed": "true"})


async def pricing(
    conn: AnyConnection, screening: int, user_id: int | None = None, key: str | None = None
) -> Any:
    row = await conn.fetchrow(PRICING, screening, user_id, key)
    if row is None:
        raise NotFound("No such screening.")
    return row


def price_lines(layout: Layout, row: Any, seats: list[str], ga: GASelection | None) -> tuple[str, list[Any]]:
    """(currency, [(seat, area, category, price)...]): seats first, then one line per GA unit."""
    prices: dict[str, int] = row["prices"]
    lines: list[tuple[str | None, str | None, str]] = [(s, None, layout.categories[s]) for s in seats]
    if ga is not None:
        lines += [(None, ga.area, row["ga_categories"][ga.area])] * ga.quantity
    missing = sorted({category for _, _, category in lines if category not in prices})
    if missing:
        raise NotOnSale(f"This screening has no price for {', '.join(missing)}.")
    return row["currency"], [(seat, area, category, prices[category]) for seat, area, category in lines]


def holder_list(names: list[str], lines: int, required: bool = False) -> list[str | None]:
    """One name (or None) per ticket, in line order. An event that names its holders
    (`holder_names_required`) needs a name for every ticket. Pure."""
    if len(names) > lines:
        raise InvalidInput(f"There are {lines} tickets; too many holder names.", path="$.holder_names")
    holders = [name.strip() or None for name in names] + [None] * (lines - len(names))
    if required and None in holders:
        raise InvalidInput(
            f"This event names every ticket's holder: send {lines} names, one per ticket.",
            path="$.holder_names",
        )
    return holders


@documented(
    "Make an order from your hold (send an Idempotency-Key header; the same key and body return "
    "the same order)",
    body=OrderRequest,
    headers=(IDEMPOTENCY_KEY,),
    responses={201: Order, 403: None, 404: None, 409: None},
    auth="customer",
    tags=TAGS,
)
async def create_order(request: Request) -> Response:
    who = await require(request)
    key = _idempotency_key(request)
    body = await read_body(request, OrderRequest)
    digest = hashlib.sha256(msgspec.json.encode(body)).digest()
    rt = runtime(request)
    await require_verified(rt, who)  # buying needs a verified email, as holding does
    holds = rt.checkout_holds
    screening = parse_token(body.hold_token)
    # Never hold a PostgreSQL connection while Redis work may need one (a screening's state is
    # loaded from PostgreSQL on first touch): under load that would exhaust the pool.
    async with rt.pool.acquire() as conn:
        row = await pricing(conn, screening, who.user_id, key)
        replayed = await _replay(rt, conn, who, digest, row)
        if replayed is not None:
            return replayed
    # Extending checks that the hold is live and yours, and says what it holds.
    hold = await holds.extend(who, body.hold_token)
    layout = await holds.inventory.layout(screening)
    currency, lines = price_lines(layout, row, hold.seats, hold.ga)
    holders = holder_list(body.holder_names, len(lines), row["holder_names_required"])
    expires_at = datetime.fromisoformat(hold.expires_at)
    total = sum(line[3] for line in lines)
    columns = list(zip(*lines, strict=True))
    gone = False
    async with rt.pool.acquire() as conn:
        try:
            made = await conn.fetchrow(
                INSERT_ORDER, who.user_id, hold.screening_id, body.hold_token, currency, total, expires_at,
                list(columns[0]), list(columns[1]), list(columns[2]), list(columns[3]), holders, key, digest,
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            # A concurrent request with this key won (replay it), or this hold already has an order.
            replayed = await _replay(rt, conn, who, digest, await _request(conn, who, key))
            if replayed is not None:
                return replayed
            existing = await conn.fetchval(LIVE_ORDER_OF_HOLD, body.hold_token)
            raise OrderExists(order_id=existing) from None
        except asyncpg.ForeignKeyViolationError as exc:
            if exc.constraint_name not in _BUYER_KEYS:
                raise
            gone = True
    if gone:
        # The token outlived its account: nobody can buy these seats for it, so free them now
        # rather than when the hold lapses.
        await holds.release(who, body.hold_token)
        raise AccountGone()
    assert made is not None
    order = Order(
        id=made["id"], status="pending", screening_id=hold.screening_id, channel="web", currency=currency,
        total=total, expires_at=expires_at, created_at=made["created_at"], paid_at=None,
        lines=[
            OrderLine(seat=seat, area=area, category=category, price=price, holder_name=holder)
            for (seat, area, category, price), holder in zip(lines, holders, strict=True)
        ],
        tickets=[], payments=[], needs_refund=False,
    )  # fmt: skip
    return respond(order, 201)


async def _request(conn: AnyConnection, who: Principal, key: str) -> Any:
    found = await conn.fetchrow(FIND_REQUEST, who.user_id, key)
    return (
        None if found is None else {"request_hash": found["request_hash"], "request_order": found["order_id"]}
    )


# ---- the other endpoints ------------------------------------------------------------------------------


@documented(
    "Your orders, newest first",
    query=("cursor", int_param("limit", 1, 100)),
    responses={200: OrderPage},
    auth="customer",
    tags=TAGS,
)
async def list_orders(request: Request) -> Response:
    who = await require(request)
    limit = query_int(request, "limit", 20, minimum=1, maximum=100)
    before = cursor_id(request) or INT64_MAX
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST_ORDERS, who.user_id, before, limit + 1)
    items = [_summary(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(OrderPage(items=items, next_cursor=next_cursor))


@documented("One order with its tickets and payments (its buyer, staff or admin)",
            responses={200: Order, 404: None}, auth="customer", tags=TAGS)  # fmt: skip
async def get_order(request: Request) -> Response:
    who = await require(request)
    return respond(await visible_order(runtime(request), who, path_int(request, "id")))


@documented("Cancel your pending order; its seats go back on sale",
            responses={200: Order, 404: None, 409: None}, auth="customer", tags=TAGS)  # fmt: skip
async def cancel_order(request: Request) -> Response:
    who = await require(request)
    rt = runtime(request)
    order_id = path_int(request, "id")
    async with rt.pool.acquire() as conn:
        token = await conn.fetchval(CANCEL_ORDER, order_id, who.user_id)
        if token is None:
            order = await visible_order(rt, who, order_id, conn)
            raise OrderClosed(f"This order is {order.status}.", status=order.status)
    try:
        await rt.holds.release(who, token)
    except (NotFound, HoldExpired):
        pass  # the hold lapsed meanwhile: its seats are free already (or about to be)
    return respond(await visible_order(rt, who, order_id))


# ---- housekeeping ---------------------------------------------------------------------------------------


async def expire_lapsed(rt: Runtime) -> int:
    """Close pending orders past their payment window and release their holds, if still alive
    (a hold can outlive its order when it was extended); returns how many. Run by the worker."""
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(EXPIRE_ORDERS)
    holds = rt.holds
    for row in rows:
        owner = Principal(user_id=row["owner"], role="customer", jti="", expires_at=0)
        try:
            await holds.release(owner, row["hold_token"])
        except (NotFound, HoldExpired):
            pass  # expired: restocked already, or the restock is on its way
    return len(rows)


routes: list[BaseRoute] = [
    Route("/orders", create_order, methods=["POST"]),
    Route("/orders", list_orders, methods=["GET"]),
    Route("/orders/{id:int}", get_order, methods=["GET"]),
    Route("/orders/{id:int}/cancel", cancel_order, methods=["POST"]),
]
