"""The door list: who is coming to one screening, seat by seat, and who is in already.

`GET /api/admin/screenings/{id}/attendees` lists every live ticket of the screening in seat
order (rows front to back, seats left to right, then GA units): seat or area, category, the
holder's name (the buyer's name when the ticket names nobody), the ticket code, and when,
where (gate) and by whom it was checked in. Staff at the door read it on the kiosk; the same
request with `Accept: text/csv` is a printable list (exports.py). Void tickets (refunded, or
of a cancelled screening) are not on it: they admit nobody.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.api import documented, path_int, respond
from seatmap.errors import NotFound
from seatmap.exports import CSV, csv_response, filename, one_batch, wants_csv
from seatmap.runtime import runtime

TAGS: Final = ("back office",)


class Attendee(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    order_id: int
    category: str
    channel: str  # web | boxoffice
    seat: str | None = None
    area: str | None = None
    holder_name: str | None = None
    buyer_email: str | None = None
    checked_in_at: datetime | None = None
    gate: str | None = None
    checked_in_by: str | None = None  # the staff member's email


class DoorList(msgspec.Struct, kw_only=True):
    screening_id: int
    title: str
    starts_at: datetime
    auditorium: str
    cinema: str
    timezone: str
    status: str
    tickets: int
    checked_in: int
    items: list[Attendee]


SCREENING: Final = """
SELECT s.id, m.title, s.starts_at, s.status, a.name AS auditorium, c.name AS cinema, c.timezone, a.cinema_id
FROM screenings s JOIN movies m ON m.id = s.movie_id
JOIN auditoriums a ON a.id = s.auditorium_id JOIN cinemas c ON c.id = a.cinema_id
WHERE s.id = $1
"""
# Seat order from the layout (y, x); GA units after every seat.
ATTENDEES: Final = """
SELECT t.code, t.order_id, t.category, o.channel, t.seat_label, t.ga_area,
       coalesce(t.holder_name, nullif(u.name, '')) AS holder_name, u.email AS buyer_email,
       t.checked_in_at, t.checked_in_gate, staff.email AS checked_in_by
FROM tickets t
JOIN orders o ON o.id = t.order_id
JOIN screenings s ON s.id = t.screening_id
LEFT JOIN seats se ON se.auditorium_id = s.auditorium_id AND se.label = t.seat_label
LEFT JOIN users u ON u.id = o.user_id
LEFT JOIN users staff ON staff.id = t.checked_in_by
WHERE t.screening_id = $1 AND t.status = 'valid'
ORDER BY t.seat_label IS NULL, se.y, se.x, t.ga_area, t.id
"""

CSV_HEADER: Final = (
    "seat", "area", "category", "holder_name", "buyer_email", "code", "order_id", "channel",
    "checked_in_at", "gate", "checked_in_by",
)  # fmt: skip


def _attendee(row: Any) -> Attendee:
    return Attendee(
        code=row["code"], order_id=row["order_id"], category=row["category"], channel=row["channel"],
        seat=row["seat_label"], area=row["ga_area"], holder_name=row["holder_name"],
        buyer_email=row["buyer_email"], checked_in_at=row["checked_in_at"], gate=row["checked_in_gate"],
        checked_in_by=row["checked_in_by"],
    )  # fmt: skip


def csv_row(a: Attendee) -> tuple[Any, ...]:
    return (
        a.seat, a.area, a.category, a.holder_name, a.buyer_email, a.code, a.order_id, a.channel,
        a.checked_in_at, a.gate, a.checked_in_by,
    )  # fmt: skip


@documented(
    "The door list of a screening: every live ticket in seat order, with its holder and check-in;"
    " `Accept: text/csv` for a printable list",
    responses={200: DoorList, 404: None},
    auth="staff",
    scope="cinema",
    tags=TAGS,
    also=(CSV,),
)
async def door_list(request: Request) -> Response:
    who = await scope.require_scoped(request, "staff")
    screening_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        screening = await conn.fetchrow(SCREENING, screening_id)
        if screening is None:
            raise NotFound("No such screening.")
        scope.check_cinema(who, screening["cinema_id"])
        rows = await conn.fetch(ATTENDEES, screening_id)
    items = [_attendee(r) for r in rows]
    if wants_csv(request):
        name = filename("door-list", screening_id, screening["starts_at"].date().isoformat())
        return csv_response(name, CSV_HEADER, one_batch([csv_row(a) for a in items]))
    return respond(
        DoorList(
            screening_id=screening_id,
            title=screening["title"],
            starts_at=screening["starts_at"],
            auditorium=screening["auditorium"],
            cinema=screening["cinema"],
            timezone=screening["timezone"],
            status=screening["status"],
            tickets=len(items),
            checked_in=sum(1 for a in items if a.checked_in_at is not None),
            items=items,
        )
    )


routes: list[BaseRoute] = [
    Route("/admin/screenings/{id:int}/attendees", door_list, methods=["GET"]),
]
