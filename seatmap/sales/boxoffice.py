"""The box office: staff sell seats at the counter for cash or a card-present payment.

A counter sale takes the same path as the web, minus the gateway: it first holds the seats
through the same Lua script (so it can never race a web buyer: one of them gets 409), then
writes the paid order, its payment and its tickets in one transaction (where the unique index
on live tickets is the final guard), then shows the seats sold. Anything refused leaves
nothing behind: the hold is released and no row is written.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.accounts.auth import require
from seatmap.api import Id, documented, read_body, respond
from seatmap.errors import AccountGone, NotFound, ReferenceUsed, SeatTaken
from seatmap.live.protocol import GASelection, SeatLabel
from seatmap.runtime import runtime
from seatmap.sales import webhooks
from seatmap.sales.orders import HolderName, Order, holder_list, price_lines, pricing, visible_order
from seatmap.sales.settlement import LiveOrder, publish_sold_or_defer
from seatmap.sales.tickets import issue

TAGS: Final = ("box office",)


class Sale(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Seats and/or GA units of one screening, and how the customer paid. `reference`: the card
    terminal's receipt number, if any."""

    screening_id: Id
    payment_method: Literal["cash", "card_present"]
    seats: Annotated[list[SeatLabel], msgspec.Meta(max_length=1000)] = []
    ga: GASelection | None = None
    holder_names: Annotated[list[HolderName], msgspec.Meta(max_length=1000)] = []
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


INSERT_SALE: Final = """
WITH o AS (
    INSERT INTO orders (user_id, screening_id, channel, sold_by, hold_token, status, currency, total,
                        expires_at, paid_at)
    VALUES (NULL, $1, 'boxoffice', $2, $3, 'paid', $4, $5, now(), now()) RETURNING id
), l AS (
    INSERT INTO order_lines (order_id, position, seat_label, ga_area, category, price, holder_name)
    SELECT o.id, t.n - 1, t.seat, t.area, t.category, t.price, t.holder
    FROM o, unnest($6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[])
         WITH ORDINALITY AS t(seat, area, category, price, holder, n)
)
INSERT INTO payments (order_id, provider, provider_ref, amount, currency, status)
SELECT o.id, $11, coalesce($12, $11 || '-' || o.id), $5, $4, 'paid' FROM o
RETURNING order_id
"""
PAYMENT_WITH_REFERENCE: Final = "SELECT order_id FROM payments WHERE provider = $1 AND provider_ref = $2"
ALREADY_SOLD: Final = """
SELECT seat_label FROM tickets WHERE screening_id = $1 AND seat_label = ANY($2::text[]) AND status = 'valid'
ORDER BY seat_label
"""


@documented(
    "Sell seats at the counter (cash or card present); returns the paid order with its tickets",
    body=Sale,
    responses={201: Order, 404: None, 409: None},
    auth="staff",
    scope="cinema",
    tags=TAGS,
)
async def sell(request: Request) -> Response:
    staff = await require(request, "staff")
    sale = await read_body(request, Sale)
    rt = runtime(request)
    if scope.visible_cinemas(staff) is not None:
        async with rt.pool.acquire() as conn:
            await scope.check_screening(conn, staff, sale.screening_id)
    holds = rt.checkout_holds
    hold = await holds.create(staff, sale.screening_id, sale.seats, sale.ga)
    try:
        layout = await holds.inventory.layout(hold.screening_id)  # before taking a connection
        async with rt.pool.acquire() as conn:
            row = await pricing(conn, hold.screening_id)
            currency, lines = price_lines(layout, row, hold.seats, hold.ga)
            holders = holder_list(sale.holder_names, len(lines), row["holder_names_required"])
            columns = list(zip(*lines, strict=True))
            total = sum(line[3] for line in lines)
            try:
                async with conn.transaction():
                    order_id = await conn.fetchval(
                        INSERT_SALE, hold.screening_id, staff.user_id, hold.token, currency, total,
                        list(columns[0]), list(columns[1]), list(columns[2]), list(columns[3]), holders,
                        sale.payment_method, sale.reference,
                    )  # fmt: skip
                    ga = {hold.ga.area: hold.ga.quantity} if hold.ga else {}
                    await issue(conn, order_id, hold.screening_id, len(lines), ga)
                    await webhooks.order_paid_events(conn, rt.settings, order_id)
            except asyncpg.ForeignKeyViolationError as exc:
                if exc.constraint_name != "orders_sold_by_fkey":
                    raise
                raise AccountGone() from None
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "payments_provider_provider_ref_key":
                    earlier = await conn.fetchval(PAYMENT_WITH_REFERENCE, sale.payment_method, sale.reference)
                    raise ReferenceUsed(
                        f"The {sale.payment_method} reference {sale.reference!r} is already recorded for "
                        f"order {earlier}.", order_id=earlier,
                    ) from None  # fmt: skip
                if exc.constraint_name != "tickets_one_live_per_seat":
                    raise
                taken = [
                    r["seat_label"] for r in await conn.fetch(ALREADY_SOLD, hold.screening_id, hold.seats)
                ]
                raise SeatTaken(
                    f"Already sold: {', '.join(taken) or 'some of these seats'}.", seats=taken, taken=taken,
                    blocked=[],
                ) from None  # fmt: skip
            order = await visible_order(rt, staff, order_id, conn)
    except Exception:
        # Refused or failed: the seats go straight back on sale, and no row was written.
        with contextlib.suppress(NotFound):
            await holds.release(staff, hold.token)
        raise
    sold = LiveOrder(
        id=order_id, user_id=None, sold_by=staff.user_id, screening_id=hold.screening_id,
        hold_token=hold.token, status="paid", currency=currency, total=total, expires_at=datetime.now(UTC),
        lapsed=False, seats=list(hold.seats), ga=hold.ga, lines=len(lines),
    )  # fmt: skip
    await publish_sold_or_defer(rt, sold)
    return respond(order, 201)


routes: list[BaseRoute] = [
    Route("/boxoffice/sales", sell, methods=["POST"]),
]
