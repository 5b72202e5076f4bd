"""Bookings: every order of the chain as the people who run it look them up, and one order in full.

`GET /api/admin/orders` lists orders newest first, filtered by screening, cinema, status,
buyer email, when they were booked (`from`/`to`) and free text (`q`: buyer name or email, a
ticket holder's name, or an exact ticket code), paged by keyset (`cursor`); the same request
with `Accept: text/csv` downloads every matching order as CSV (exports.py), streamed in pages.
`GET /api/admin/orders/{id}` is one order for staff: buyer, screening, tickets with their
check-ins, every payment attempt and refund, and the order's history as one timeline.

The WHERE clause is built from the filters actually given (`where`, pure): each one is its own
parameterised condition, so PostgreSQL plans every combination with the index it can use
(migration 0013) instead of one generic plan full of `$n IS NULL OR …`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.api import (
    INT64_MAX,
    Page,
    Param,
    ascii_int,
    cursor_id,
    documented,
    encode_cursor,
    enum_param,
    int_param,
    path_int,
    query_int,
    respond,
)
from seatmap.errors import InvalidInput, NotFound
from seatmap.exports import CSV, csv_response, filename, wants_csv
from seatmap.money import exponent
from seatmap.runtime import runtime
from seatmap.sales.orders import Order, fetch_order

TAGS: Final = ("back office",)
STATUSES: Final = ("pending", "paid", "expired", "cancelled", "refund_pending", "refunded")
CSV_PAGE: Final = 1000
MAX_Q: Final = 200


# ---- filters (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """A `from`/`to` bound: an instant, or a calendar day read in the screening's cinema's zone."""

    at: datetime | date


@dataclass(frozen=True)
class Filters:
    screening_id: int | None = None
    cinema_id: int | None = None
    status: str | None = None
    email: str | None = None
    since: Moment | None = None
    until: Moment | None = None
    q: str | None = None


def parse_moment(name: str, text: str) -> Moment:
    """`2026-12-07` (that day, in the cinema's time zone) or an RFC 3339 time with its offset."""
    try:
        if len(text) == 10:
            return Moment(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput(
            f"{name!r} must be a date (YYYY-MM-DD) or a time with its offset (2026-12-07T18:00:00+07:00).",
            path=f"$.{name}",
        )
    return Moment(moment)


def _id(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name) or None
    if raw is None:
        return None
    value = ascii_int(raw)
    if value is None or value < 1:
        raise InvalidInput(f"{name!r} must be a positive id.", path=f"$.{name}")
    return value


def parse_filters(params: Mapping[str, str]) -> Filters:
    """The query string's filters, each checked; an empty one counts as absent. Pure."""
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}.", path="$.status")
    q = (params.get("q") or "").strip() or None
    if q is not None and len(q) > MAX_Q:
        raise InvalidInput(f"q is at most {MAX_Q} characters.", path="$.q")
    email = (params.get("email") or "").strip() or None
    if email is not None and len(email) > 320:
        raise InvalidInput("email is at most 320 characters.", path="$.email")
    since = params.get("from") or None
    until = params.get("to") or None
    return Filters(
        screening_id=_id(params, "screening_id"),
        cinema_id=_id(params, "cinema_id"),
        status=status,
        email=email,
        since=parse_moment("from", since) if since else None,
        until=parse_moment("to", until) if until else None,
        q=q,
    )


def like(text: str) -> str:
    """`text` as an ILIKE pattern matching it anywhere, its own `%`, `_` and `\\` taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def where(filters: Filters, cinemas: Sequence[int] | None, before: int) -> tuple[str, list[Any]]:
    """The conditions (joined with AND) and their arguments, `$1` first. Pure.

    `cinemas`: the caller's scope (an organizer's cinemas), None for all of them.
    """
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    conds = [f"o.id < {arg(before)}"]
    if filters.screening_id is not None:
        conds.append(f"o.screening_id = {arg(filters.screening_id)}")
    if filters.cinema_id is not None:
        conds.append(f"a.cinema_id = {arg(filters.cinema_id)}")
    if cinemas is not None:
        conds.append(f"a.cinema_id = ANY({arg(list(cinemas))}::bigint[])")
    if filters.status == "pending":
        conds.append("o.status = 'pending' AND o.expires_at > now()")
    elif filters.status == "expired":
        conds.append("(o.status = 'expired' OR (o.status = 'pending' AND o.expires_at <= now()))")
    elif filters.status is not None:
        conds.append(f"o.status = {arg(filters.status)}")
    if filters.email is not None:
        conds.append(f"lower(u.email) = lower({arg(filters.email)})")
    for moment, op, shift in ((filters.since, ">=", 0), (filters.until, "<", 1)):
        if moment is None:
            continue
        if isinstance(moment.at, datetime):
            # `to` as an instant is exclusive, `from` inclusive.
            conds.append(f"o.created_at {op} {arg(moment.at)}")
        else:
            # A day: from its first moment, to the end of it (inclusive), in the cinema's zone.
            conds.append(
                f"o.created_at {op} (({arg(moment.at)}::date + {shift})::timestamp AT TIME ZONE c.timezone)"
            )
    if filters.q is not None:
        pattern, code = arg(like(filters.q)), arg(filters.q)
        conds.append(
            f"(u.email ILIKE {pattern} OR u.name ILIKE {pattern}"
            " OR EXISTS (SELECT 1 FROM order_lines l"
            f" WHERE l.order_id = o.id AND l.holder_name ILIKE {pattern})"
            f" OR EXISTS (SELECT 1 FROM tickets t WHERE t.order_id = o.id AND t.code = {code}))"
        )
    return " AND ".join(conds), args


# ---- wire shapes ------------------------------------------------------------------------------


class Person(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: int
    email: str
    name: str = ""


class Booking(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One order as the bookings list shows it. `buyer` is absent for a box-office sale (a walk-in);
    `sold_by` is the cashier then. `seats`: seat labels and GA area names, one per ticket."""

    id: int
    status: str
    channel: str
    screening_id: int
    title: str
    starts_at: datetime
    cinema_id: int
    cinema: str
    timezone: str
    currency: str
    currency_exponent: int
    total: int
    tickets: int
    seats: list[str]
    holder_names: list[str]
    created_at: datetime
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    buyer: Person | None = None
    sold_by: Person | None = None


class BookingPage(Page):
    items: list[Booking]


class Refund(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: int
    payment_id: int
    amount: int
    currency: str
    reason: str
    status: str  # pending | succeeded | manual
    closes_order: bool
    created_at: datetime
    requested_by: Person | None = None
    completed_at: datetime | None = None
    provider_refund_id: str | None = None


class PaymentRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: int
    provider: str
    provider_ref: str
    status: str
    amount: int
    currency: str
    created_at: datetime
    updated_at: datetime
    needs_refund: bool = False
    refund_reason: str | None = None


class CheckInRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    at: datetime
    gate: str | None = None
    by: Person | None = None


class OrderEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One step of an order's history. `event`: ordered | paid | payment_<status> | closed_<status> |
    refund_requested | refund_<status> | checked_in. `by`: the person, where the system records one."""

    at: datetime
    event: str
    detail: str = ""
    by: Person | None = None


def order_events(
    b: Booking, order: Order, payments: list[PaymentRecord], refunds: list[Refund], scans: list[CheckInRecord]
) -> list[OrderEvent]:
    """The order's history in time order, from the rows that record it. Pure.

    What is recorded: the order's creation, payment and closing (expired, cancelled, refunded),
    each payment attempt's creation and last change (not every intermediate status), each
    refund's request and completion, each check-in. Who cancelled an order is not recorded.
    """
    events = [OrderEvent(at=b.created_at, event="ordered", detail=b.channel, by=b.buyer or b.sold_by)]
    for p in payments:
        events.append(
            OrderEvent(at=p.created_at, event="payment_created", detail=f"{p.provider} {p.provider_ref}")
        )
        if p.status != "created":
            events.append(
                OrderEvent(at=p.updated_at, event=f"payment_{p.status}", detail=p.refund_reason or "")
            )
    if b.paid_at is not None:
        events.append(OrderEvent(at=b.paid_at, event="paid", detail=f"{len(order.tickets)} tickets"))
    if b.closed_at is not None:
        events.append(OrderEvent(at=b.closed_at, event="closed", detail=b.status))
    for r in refunds:
        events.append(
            OrderEvent(at=r.created_at, event="refund_requested", detail=r.reason, by=r.requested_by)
        )
        if r.completed_at is not None:
            events.append(
                OrderEvent(at=r.completed_at, event=f"refund_{r.status}", detail=r.provider_refund_id or "")
            )
    for c in scans:
        events.append(
            OrderEvent(at=c.at, event="checked_in", detail=" ".join(filter(None, [c.code, c.gate])), by=c.by)
        )
    return sorted(events, key=lambda e: e.at)


class StaffOrder(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An order for staff: the customer's view of it (`order`) plus who bought or sold it, the
    screening, every payment attempt and refund, each ticket's check-in and the whole history."""

    order: Order
    booking: Booking
    payments: list[PaymentRecord]
    refunds: list[Refund]
    check_ins: list[CheckInRecord]
    history: list[OrderEvent]


# ---- SQL --------------------------------------------------------------------------------------

_STATUS: Final = "CASE WHEN o.status = 'pending' AND o.expires_at <= now() THEN 'expired' ELSE o.status END"
_BOOKING: Final = f"""
SELECT o.id, {_STATUS} AS status, o.channel, o.screening_id, m.title, s.starts_at, a.cinema_id,
       c.name AS cinema, c.timezone, o.currency, o.total, o.created_at, o.paid_at, o.closed_at,
       u.id AS buyer_id, u.email AS buyer_email, u.name AS buyer_name,
       sb.id AS seller_id, sb.email AS seller_email, sb.name AS seller_name,
       coalesce(l.seats, '{{}}') AS seats, coalesce(l.holders, '{{}}') AS holders
FROM orders o
JOIN screenings s ON s.id = o.screening_id
JOIN movies m ON m.id = s.movie_id
JOIN auditoriums a ON a.id = s.auditorium_id
JOIN cinemas c ON c.id = a.cinema_id
LEFT JOIN users u ON u.id = o.user_id
LEFT JOIN users sb ON sb.id = o.sold_by
LEFT JOIN LATERAL (
    SELECT array_agg(coalesce(seat_label, ga_area) ORDER BY position) AS seats,
           array_agg(holder_name ORDER BY position) FILTER (WHERE holder_name IS NOT NULL) AS holders
    FROM order_lines WHERE order_id = o.id
) l ON true
"""
ONE_BOOKING: Final = f"{_BOOKING} WHERE o.id = $1"
PAYMENTS: Final = """
SELECT id, provider, provider_ref, status, amount, currency, created_at, updated_at, needs_refund,
       refund_reason
FROM payments WHERE order_id = $1 ORDER BY id
"""
REFUNDS: Final = """
SELECT r.id, r.payment_id, r.amount, r.currency, r.reason, r.status, r.closes_order, r.created_at,
       r.completed_at, r.provider_refund_id, u.id AS by_id, u.email AS by_email, u.name AS by_name
FROM refunds r LEFT JOIN users u ON u.id = r.requested_by WHERE r.order_id = $1 ORDER BY r.id
"""
CHECK_INS: Final = """
SELECT t.code, t.checked_in_at, t.checked_in_gate, u.id AS by_id, u.email AS by_email, u.name AS by_name
FROM tickets t LEFT JOIN users u ON u.id = t.checked_in_by
WHERE t.order_id = $1 AND t.checked_in_at IS NOT NULL ORDER BY t.checked_in_at, t.id
"""


def list_sql(conditions: str, limit_arg: str) -> str:
    return f"{_BOOKING} WHERE {conditions} ORDER BY o.id DESC LIMIT {limit_arg}"


def person(row: Any, prefix: str) -> Person | None:
    if row[f"{prefix}_id"] is None:
        return None
    return Person(id=row[f"{prefix}_id"], email=row[f"{prefix}_email"], name=row[f"{prefix}_name"] or "")


def booking(row: Any) -> Booking:
    return Booking(
        id=row["id"], status=row["status"], channel=row["channel"], screening_id=row["screening_id"],
        title=row["title"], starts_at=row["starts_at"], cinema_id=row["cinema_id"], cinema=row["cinema"],
        timezone=row["timezone"], currency=row["currency"], currency_exponent=exponent(row["currency"]),
        total=row["total"], tickets=len(row["seats"]), seats=list(row["seats"]),
        holder_names=list(row["holders"]), created_at=row["created_at"], paid_at=row["paid_at"],
        closed_at=row["closed_at"],
        buyer=person(row, "buyer"), sold_by=person(row, "seller"),
    )  # fmt: skip


CSV_HEADER: Final = (
    "order_id", "status", "channel", "created_at", "paid_at", "buyer_email", "buyer_name", "sold_by",
    "cinema", "title", "screening_id", "starts_at", "tickets", "seats", "holder_names", "currency", "total",
)  # fmt: skip


def csv_row(b: Booking) -> tuple[Any, ...]:
    """One booking as a CSV record; the total in the currency's units (`150000`, `12.5`)."""
    return (
        b.id, b.status, b.channel, b.created_at, b.paid_at, b.buyer.email if b.buyer else None,
        b.buyer.name if b.buyer else None, b.sold_by.email if b.sold_by else None, b.cinema, b.title,
        b.screening_id, b.starts_at, b.tickets, " ".join(b.seats), "; ".join(b.holder_names), b.currency,
        b.total / 10**b.currency_exponent if b.currency_exponent else b.total,
    )  # fmt: skip


# ---- endpoints --------------------------------------------------------------------------------

FILTERS: Final = (
    int_param("screening_id", 1, INT64_MAX),
    int_param("cinema_id", 1, INT64_MAX),
    enum_param("status", STATUSES),
    Param(name="email", schema={"type": "string", "maxLength": 320}),
    Param(name="from", schema={"type": "string", "description": "a date or an RFC 3339 time"}),
    Param(name="to", schema={"type": "string", "description": "a date (inclusive) or an RFC 3339 time"}),
    Param(name="q", schema={"type": "string", "maxLength": MAX_Q}),
)  # fmt: skip


@documented(
    "Bookings, newest first, filtered; `Accept: text/csv` downloads every match as CSV",
    query=(*FILTERS, "cursor", int_param("limit", 1, 200)),
    responses={200: BookingPage},
    auth="staff",
    scope="cinema",
    tags=TAGS,
    also=(CSV,),
)
async def list_bookings(request: Request) -> Response:
    """An organizer sees its own cinemas' bookings; naming another cinema or screening is 403."""
    who = await scope.require_scoped(request, "staff")
    filters = parse_filters(request.query_params)
    limit = query_int(request, "limit", 50, minimum=1, maximum=200)
    before = cursor_id(request) or INT64_MAX
    pool = runtime(request).pool
    cinemas = scope.filter_ids(who)
    if filters.cinema_id is not None:
        scope.check_cinema(who, filters.cinema_id)
    if filters.screening_id is not None:
        async with pool.acquire() as conn:
            await scope.check_screening(conn, who, filters.screening_id)
    if wants_csv(request):

        async def pages() -> AsyncIterator[list[tuple[Any, ...]]]:
            after = before
            while True:
                conditions, args = where(filters, cinemas, after)
                async with pool.acquire() as conn:
                    rows = await conn.fetch(list_sql(conditions, f"${len(args) + 1}"), *args, CSV_PAGE)
                yield [csv_row(booking(r)) for r in rows]
                if len(rows) < CSV_PAGE:
                    return
                after = rows[-1]["id"]

        return csv_response(filename("bookings", *_name_parts(filters)), CSV_HEADER, pages())
    conditions, args = where(filters, cinemas, before)
    async with pool.acquire() as conn:
        rows = await conn.fetch(list_sql(conditions, f"${len(args) + 1}"), *args, limit + 1)
    items = [booking(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(BookingPage(items=items, next_cursor=next_cursor))


def _name_parts(filters: Filters) -> list[str | int]:
    parts: list[str | int] = []
    if filters.screening_id is not None:
        parts += ["screening", filters.screening_id]
    if filters.cinema_id is not None:
        parts += ["cinema", filters.cinema_id]
    if filters.status is not None:
        parts.append(filters.status)
    return parts


@documented(
    "One order for staff: buyer, screening, tickets and check-ins, payments, refunds, its history",
    responses={200: StaffOrder, 404: None},
    auth="staff",
    scope="cinema",
    tags=TAGS,
)
async def staff_order(request: Request) -> Response:
    who = await scope.require_scoped(request, "staff")
    order_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(ONE_BOOKING, order_id)
        found = await fetch_order(conn, order_id)
        if row is None or found is None:
            raise NotFound("No such order.")
        scope.check_cinema(who, row["cinema_id"])
        payments = await conn.fetch(PAYMENTS, order_id)
        refunds = await conn.fetch(REFUNDS, order_id)
        check_ins = await conn.fetch(CHECK_INS, order_id)
    summary = booking(row)
    paid = [PaymentRecord(**dict(p)) for p in payments]
    returned = [
        Refund(
            id=r["id"], payment_id=r["payment_id"], amount=r["amount"], currency=r["currency"],
            reason=r["reason"], status=r["status"], closes_order=r["closes_order"],
            created_at=r["created_at"], completed_at=r["completed_at"],
            provider_refund_id=r["provider_refund_id"],
            requested_by=person(r, "by"),
        )
        for r in refunds
    ]  # fmt: skip
    scans = [
        CheckInRecord(code=c["code"], at=c["checked_in_at"], gate=c["checked_in_gate"], by=person(c, "by"))
        for c in check_ins
    ]
    history = order_events(summary, found[0], paid, returned, scans)
    return respond(
        StaffOrder(
            order=found[0], booking=summary, payments=paid, refunds=returned, check_ins=scans, history=history
        )
    )


routes: list[BaseRoute] = [
    Route("/admin/orders", list_bookings, methods=["GET"]),
    Route("/admin/orders/{id:int}", staff_order, methods=["GET"]),
]
