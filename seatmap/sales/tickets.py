"""Tickets: one per seat (or GA unit) of a paid order, with an unguessable code and a QR image.

A ticket is written only inside the transaction that confirms a payment (or a box-office
sale), and the partial unique index `tickets_one_live_per_seat` refuses a second live ticket
for a seat: that is the final guard against double sale whatever Redis said. The same rows
are what the live seat map is rebuilt from after Redis lost a screening's state
(`sold_inventory`, which composition.py hands to the live inventory), and what its reconciler
checks it against.

Check-in is one conditional UPDATE, so two kiosks scanning the same ticket at the same moment
cannot both admit it: PostgreSQL re-checks `checked_in_at IS NULL` on the row the winner just
changed, and the loser gets 409 `already_used` with when, by whom and where it was first used.
"""

from __future__ import annotations

import io
import re
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
import segno
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.accounts.auth import require
from seatmap.api import Id, decode, documented, respond
from seatmap.db import AnyConnection
from seatmap.errors import (
    AlreadyUsed,
    CheckInClosed,
    NotFound,
    SoldOut,
    TicketVoid,
    WrongScreening,
)
from seatmap.live import sold
from seatmap.runtime import runtime
from seatmap.sales import webhooks

_CODE: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CODE_BYTES: Final = 12  # 96 random bits, 16 URL-safe characters

TAGS: Final = ("tickets",)


def new_code() -> str:
    return secrets.token_urlsafe(_CODE_BYTES)


# ---- wire shapes ----------------------------------------------------------------------------


class Ticket(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A ticket as its order shows it. `qr_url` is the image to show at the door."""

    code: str
    screening_id: int
    category: str
    price: int
    status: str
    qr_url: str
    seat: str | None = None
    area: str | None = None
    holder_name: str | None = None
    checked_in_at: datetime | None = None


class StaffMember(msgspec.Struct, kw_only=True):
    id: int
    email: str


class ShowingBrief(msgspec.Struct, kw_only=True):
    id: int
    title: str
    auditorium: str
    starts_at: datetime
    ends_at: datetime
    status: str


class TicketInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a kiosk shows: the seat, the screening, the holder, and the check-in if any."""

    code: str
    order_id: int
    status: str
    category: str
    screening: ShowingBrief
    seat: str | None = None
    area: str | None = None
    holder_name: str | None = None
    checked_in_at: datetime | None = None
    checked_in_by: StaffMember | None = None
    gate: str | None = None


class CheckIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`screening_id`: the screening this kiosk admits to (a ticket of another one is refused);
    `gate`: where the kiosk stands, recorded with the scan. Both optional; the body may be empty."""

    screening_id: Id | None = None
    gate: Annotated[str, msgspec.Meta(max_length=100)] | None = None


# ---- SQL --------------------------------------------------------------------------------------

# Codes come in as an array indexed by line position (0-based, hence + 1).
ISSUE_TICKETS: Final = """
INSERT INTO tickets (code, order_id, screening_id, seat_label, ga_area, category, price, holder_name)
SELECT ($3::text[])[l.position + 1], l.order_id, $2, l.seat_label, l.ga_area, l.category, l.price,
       l.holder_name
FROM order_lines l WHERE l.order_id = $1 ORDER BY l.position
"""
_GA_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtextextended('ga:' || $1::bigint || ':' || $2, 0))"
_GA_REMAINING: Final = """
SELECT g.capacity - (SELECT count(*) FROM tickets t
                     WHERE t.screening_id = $1 AND t.ga_area = $2 AND t.status = 'valid')
FROM ga_areas g JOIN screenings s ON s.auditorium_id = g.auditorium_id
WHERE s.id = $1 AND g.name = $2
"""
SOLD_INVENTORY: Final = """
SELECT t.seat_label, t.ga_area, t.order_id, o.hold_token, count(*) AS n
FROM tickets t JOIN orders o ON o.id = t.order_id
WHERE t.screening_id = $1 AND t.status = 'valid'
GROUP BY t.seat_label, t.ga_area, t.order_id, o.hold_token
"""
_INFO_COLUMNS: Final = """
t.code, t.order_id, t.status, t.seat_label, t.ga_area, t.category, t.holder_name, t.screening_id,
t.checked_in_at, t.checked_in_by, t.checked_in_gate,
s.starts_at, s.ends_at, s.status AS screening_status, m.title, a.name AS auditorium
"""
_INFO_JOIN: Final = """
JOIN screenings s ON s.id = t.screening_id
JOIN movies m ON m.id = s.movie_id
JOIN auditoriums a ON a.id = s.auditorium_id
"""
TICKET_INFO: Final = f"""
SELECT {_INFO_COLUMNS}, o.user_id, u.email AS checked_in_email
FROM tickets t {_INFO_JOIN}
JOIN orders o ON o.id = t.order_id
LEFT JOIN users u ON u.id = t.checked_in_by
WHERE t.code = $1
"""
TICKET_SCREENING: Final = "SELECT screening_id FROM tickets WHERE code = $1"
# The whole check-in decision in one statement. A concurrent scan of the same ticket waits for
# this row's lock, then re-evaluates the WHERE clause on the new version and updates nothing.
CHECK_IN: Final = f"""
UPDATE tickets t SET checked_in_at = now(), checked_in_by = $2, checked_in_gate = $3
FROM screenings s
JOIN movies m ON m.id = s.movie_id
JOIN auditoriums a ON a.id = s.auditorium_id
CROSS JOIN users u
WHERE t.code = $1 AND s.id = t.screening_id AND u.id = $2
  AND t.status = 'valid' AND t.checked_in_at IS NULL
  AND ($4::bigint IS NULL OR t.screening_id = $4)
  AND s.status = 'scheduled'
  AND now() >= s.starts_at - make_interval(secs => $5) AND now() < s.ends_at
RETURNING {_INFO_COLUMNS}, u.email AS checked_in_email
"""


# ---- used by orders, payments and the box office -----------------------------------------------


async def issue(
    conn: AnyConnection, order_id: int, screening_id: int, lines: int, ga: dict[str, int]
) -> None:
    """Write one ticket per order line, inside the caller's transaction.

    Raises asyncpg's UniqueViolationError when a seat already has a live ticket, and
    `SoldOut` when a GA area has fewer units left than the order needs; either way the
    caller's transaction must not commit.
    """
    for area, units in sorted(ga.items()):
        # Serialises GA sales per (screening, area) until commit, so the count below is exact.
        await conn.execute(_GA_LOCK, screening_id, area)
        remaining = await conn.fetchval(_GA_REMAINING, screening_id, area)
        if remaining is None or remaining < units:
            raise SoldOut(f"Only {remaining or 0} left in {area}.", remaining=remaining or 0)
    await conn.execute(ISSUE_TICKETS, order_id, screening_id, [new_code() for _ in range(lines)])


async def sold_inventory(conn: Any, screening_id: int) -> sold.Sold:
    """Seats and GA units with a live ticket, each with its order: what the seat-map rebuild must
    show as sold, and sold to whom."""
    seats: dict[str, sold.SoldSeat] = {}
    areas: dict[str, dict[str, int]] = {}
    for row in await conn.fetch(SOLD_INVENTORY, screening_id):
        order = str(row["order_id"])
        if row["seat_label"] is not None:
            seats[row["seat_label"]] = sold.SoldSeat(order, row["hold_token"])
        else:
            areas.setdefault(row["ga_area"], {})[order] = row["n"]
    return sold.Sold(seats, areas)


# ---- endpoints --------------------------------------------------------------------------------


def _code(request: Request) -> str:
    code = str(request.path_params["code"])
    if _CODE.match(code) is None:
        raise NotFound("No ticket with this code.")
    return code


def _info(row: Any, email: str | None = None) -> TicketInfo:
    staff = None
    if row["checked_in_by"] is not None:
        staff = StaffMember(id=row["checked_in_by"], email=email or "")
    return TicketInfo(
        code=row["code"],
        order_id=row["order_id"],
        status=row["status"],
        seat=row["seat_label"],
        area=row["ga_area"],
        category=row["category"],
        holder_name=row["holder_name"],
        screening=ShowingBrief(
            id=row["screening_id"],
            title=row["title"],
            auditorium=row["auditorium"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            status=row["screening_status"],
        ),
        checked_in_at=row["checked_in_at"],
        checked_in_by=staff,
        gate=row["checked_in_gate"],
    )


def _refusal(row: Any, kiosk_screening: int | None, opens_before: int) -> Exception:
    """Why a check-in updated nothing, read after the fact (the decision itself was atomic)."""
    if row["status"] != "valid":
        return TicketVoid()
    if kiosk_screening is not None and row["screening_id"] != kiosk_screening:
        return WrongScreening(
            f"This ticket is for screening {row['screening_id']}, not {kiosk_screening}.",
            screening_id=row["screening_id"],
        )
    if row["checked_in_at"] is not None:
        info = _info(row, row["checked_in_email"])
        return AlreadyUsed(
            f"This ticket was already used at {row['checked_in_at'].isoformat(timespec='seconds')}.",
            checked_in_at=info.checked_in_at,
            checked_in_by=info.checked_in_by,
            gate=info.gate,
        )
    opens_at = row["starts_at"] - timedelta(seconds=opens_before)
    if row["screening_status"] != "scheduled":
        return CheckInClosed(
            f"This screening is {row['screening_status']}.", opens_at=opens_at, closes_at=row["ends_at"]
        )
    return CheckInClosed(opens_at=opens_at, closes_at=row["ends_at"])


@documented(
    "Admit a ticket at the door (one time; 409 already_used, wrong_screening, ticket_void or "
    "check_in_closed otherwise)",
    body=CheckIn,
    responses={200: TicketInfo, 404: None, 409: None},
    auth="staff",
    scope="cinema",
    tags=TAGS,
)
async def check_in(request: Request) -> Response:
    staff = await require(request, "staff")
    code = _code(request)
    raw = await request.body()
    body = decode(raw, CheckIn) if raw.strip() else CheckIn()
    rt = runtime(request)
    opens_before = rt.settings.checkin_opens_before
    async with rt.pool.acquire() as conn:
        if scope.visible_cinemas(staff) is not None:
            # An organizer admits only at its own cinemas' doors (an unknown code: the 404 below).
            screening_id = await conn.fetchval(TICKET_SCREENING, code)
            if screening_id is not None:
                await scope.check_screening(conn, staff, screening_id)
        async with conn.transaction():  # the check-in and its webhook event, or neither
            row = await conn.fetchrow(
                CHECK_IN, code, staff.user_id, body.gate, body.screening_id, opens_before
            )
            if row is not None:
                info = _info(row, row["checked_in_email"])
                await webhooks.emit(
                    conn, rt.settings, "ticket.checked_in", msgspec.to_builtins(info),
                    screening_id=info.screening.id,
                )  # fmt: skip
                return respond(info)
        after = await conn.fetchrow(TICKET_INFO, code)
    if after is None:
        raise NotFound("No ticket with this code.")
    raise _refusal(after, body.screening_id, opens_before)


@documented(
    "Look a ticket up by its code (staff, or the buyer)",
    responses={200: TicketInfo, 404: None},
    auth="customer",
    tags=TAGS,
)
async def lookup(request: Request) -> Response:
    """Staff see every ticket, an organizer those of its cinemas; a customer only those of
    their own orders (others: 404)."""
    who = await require(request)
    code = _code(request)
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(TICKET_INFO, code)
        manages = row is not None and who.has_role("staff")
        if manages and (visible := scope.visible_cinemas(who)) is not None:
            assert row is not None
            manages = await scope.screening_cinema(conn, row["screening_id"]) in visible
    if row is None or not (manages or row["user_id"] == who.user_id):
        raise NotFound("No ticket with this code.")
    return respond(_info(row, row["checked_in_email"]))


@documented(
    "The ticket's QR code as SVG (it encodes the ticket code; the code itself is the secret)",
    responses={200: "image/svg+xml", 404: None},
    tags=TAGS,
)
async def qr_svg(request: Request) -> Response:
    code = _code(request)
    async with runtime(request).pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM tickets WHERE code = $1", code) is None:
            raise NotFound("No ticket with this code.")
    out = io.BytesIO()
    segno.make(code, error="m").save(out, kind="svg", scale=6, border=2, xmldecl=False, title=code)
    return Response(
        out.getvalue(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=86400"},
    )


routes: list[BaseRoute] = [
    Route("/tickets/{code}", lookup, methods=["GET"]),
    Route("/tickets/{code}/qr.svg", qr_svg, methods=["GET"]),
    Route("/tickets/{code}/check-in", check_in, methods=["POST"]),
]
