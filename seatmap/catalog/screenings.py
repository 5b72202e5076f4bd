"""Screenings: one showing of a movie (or event) in an auditorium, as everyone reads it.

Reads are public, drafts only for admins and their cinemas' organizers (`scheduling` has the
writes and their rules).
Times go out in the cinema's own time zone, with its offset, and `?date=` means a day in that
time zone. Lists page by the keyset (starts_at, id), so a screening added while a client pages
through never shifts the pages: nothing is skipped or repeated. `screening_detail` is the one
screening with everything needed to draw and sell it, for every module that shows one.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import auth
from seatmap.api import (
    INT64_MAX,
    Page,
    ascii_int,
    decode_cursor,
    documented,
    encode_cursor,
    int_param,
    path_int,
    query_int,
    respond,
)
from seatmap.catalog.auditoriums import Auditorium
from seatmap.catalog.availability import Availability, Capacity, live_availability, seat_map_availability
from seatmap.catalog.cinemas import Cinema
from seatmap.catalog.layouts import Layout
from seatmap.catalog.movies import Movie
from seatmap.db import AnyConnection
from seatmap.errors import InvalidInput, NotFound, Unauthorized
from seatmap.money import exponent
from seatmap.runtime import Runtime, runtime

HolderNames = Literal["required", "optional", "none"]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# ---- wire shapes ----------------------------------------------------------------------------


class Screening(msgspec.Struct, kw_only=True):
    id: int
    status: str
    starts_at: datetime
    ends_at: datetime
    currency: str
    currency_exponent: int  # decimal places of `currency` in amounts (money.py): 0 for IDR
    prices: dict[str, int]
    cinema: Cinema
    auditorium: Auditorium
    movie: Movie
    # From the live state (catalog/availability.py): available | few_left | sold_out.
    availability: Availability = "available"
    # The event names every ticket's holder: checkout and the box office refuse a sale without.
    holder_names_required: bool = False


class ScreeningPage(Page):
    items: list[Screening]


class GaAvailability(msgspec.Struct, kw_only=True):
    name: str
    category: str
    capacity: int
    remaining: int


class ScreeningDetail(Screening, kw_only=True):
    """One screening with everything a client needs to draw and sell it.

    `seats` holds only the seats that are not free (label -> held, sold or blocked) and `seq`
    the live map's sequence number at that moment; `ga` the remaining capacity of each GA area.
    """

    layout: Layout
    seats: dict[str, str] = msgspec.field(default_factory=dict)
    ga: list[GaAvailability] = msgspec.field(default_factory=list)
    seq: int = 0
    # Whether a sale asks a name per ticket: required (this event), optional
    # (SEATMAP_ASK_HOLDER_NAMES), or none.
    holder_names: HolderNames = "none"
    # Until when a buyer may refund a paid order (SEATMAP_REFUND_DEADLINE before the start).
    refunds_close_at: datetime | None = None


# ---- SQL --------------------------------------------------------------------------------------

_SELECT: Final = """
SELECT s.id, s.status, s.starts_at, s.ends_at, s.currency,
       coalesce((SELECT jsonb_object_agg(p.category, p.amount) FROM screening_prices p
                 WHERE p.screening_id = s.id), '{}') AS prices,
       c.id AS cinema_id, c.name AS cinema_name, c.city, c.timezone, c.address,
       a.id AS auditorium_id, a.name AS auditorium_name, a.seat_count, a.ga_capacity, a.categories,
       m.id AS movie_id, m.title, m.kind, m.duration_minutes, m.rating, m.description,
       s.holder_names_required,
       (SELECT count(*) FROM seat_blocks b WHERE b.screening_id = s.id) AS blocked,
       (SELECT count(*) FROM tickets t WHERE t.screening_id = s.id AND t.status = 'valid'
          AND t.seat_label IS NOT NULL)
     + (SELECT count(*) FROM tickets t WHERE t.screening_id = s.id AND t.status = 'valid'
          AND t.ga_area IS NOT NULL) AS sold
"""
_FROM: Final = """
FROM screenings s
JOIN auditoriums a ON a.id = s.auditorium_id
JOIN cinemas c ON c.id = a.cinema_id
JOIN movies m ON m.id = s.movie_id
"""
# Without a date: what has not ended yet. With one: that whole day in the cinema's time zone
# (a range on starts_at, so a day with a DST change is still the right 23 or 25 hours).
LIST_SCREENINGS: Final = (
    _SELECT
    + _FROM
    + """
WHERE ($1::text IS NULL OR lower(c.city) = lower($1))
  AND ($2::bigint IS NULL OR c.id = $2)
  AND ($3::bigint IS NULL OR m.id = $3)
  AND CASE WHEN $4::date IS NULL THEN s.ends_at > now()
           ELSE s.starts_at >= $4::date::timestamp AT TIME ZONE c.timezone
            AND s.starts_at < ($4::date + 1)::timestamp AT TIME ZONE c.timezone END
  AND (s.status <> 'draft' OR $5::boolean OR c.id = ANY($9::bigint[]))
  AND ($6::timestamptz IS NULL OR (s.starts_at, s.id) > ($6::timestamptz, $7::bigint))
ORDER BY s.starts_at, s.id
LIMIT $8
"""
)
GET_SCREENING: Final = _SELECT + _FROM + "WHERE s.id = $1"
GET_DETAIL: Final = _SELECT + ", a.layout::text AS layout" + _FROM + "WHERE s.id = $1"


# ---- reading ----------------------------------------------------------------------------------


def _screening(row: asyncpg.Record) -> Screening:
    zone = zoneinfo.ZoneInfo(row["timezone"])
    return Screening(
        id=row["id"],
        status=row["status"],
        starts_at=row["starts_at"].astimezone(zone),
        ends_at=row["ends_at"].astimezone(zone),
        currency=row["currency"],
        currency_exponent=exponent(row["currency"]),
        prices=row["prices"],
        cinema=Cinema(
            id=row["cinema_id"],
            name=row["cinema_name"],
            city=row["city"],
            timezone=row["timezone"],
            address=row["address"],
        ),
        auditorium=Auditorium(
            id=row["auditorium_id"],
            cinema_id=row["cinema_id"],
            name=row["auditorium_name"],
            seat_count=row["seat_count"],
            ga_capacity=row["ga_capacity"],
            categories=list(row["categories"]),
        ),
        movie=Movie(
            id=row["movie_id"],
            title=row["title"],
            kind=row["kind"],
            duration_minutes=row["duration_minutes"],
            rating=row["rating"],
            description=row["description"],
        ),
        holder_names_required=row["holder_names_required"],
    )


def _capacity(row: asyncpg.Record) -> Capacity:
    return Capacity(row["id"], row["seat_count"], row["ga_capacity"], row["blocked"], row["sold"])


async def fetch_screening(conn: AnyConnection, screening_id: int) -> Screening:
    row = await conn.fetchrow(GET_SCREENING, screening_id)
    if row is None:
        raise NotFound("No such screening.")
    return _screening(row)


async def screening_detail(
    rt: Runtime, screening_id: int, *, include_drafts: bool = False
) -> ScreeningDetail:
    """One screening with cinema, auditorium, movie, layout, prices and its live seat state.

    For every module that shows a screening (REST, WebSocket snapshot, box office). Drafts are
    `NotFound` unless `include_drafts`.
    """
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(GET_DETAIL, screening_id)
    if row is None or (row["status"] == "draft" and not include_drafts):
        raise NotFound("No such screening.")
    layout = msgspec.json.decode(row["layout"], type=Layout)
    names: HolderNames = "none"
    if row["holder_names_required"]:
        names = "required"
    elif rt.settings.ask_holder_names:
        names = "optional"
    detail = ScreeningDetail(
        **msgspec.structs.asdict(_screening(row)),
        layout=layout,
        holder_names=names,
        refunds_close_at=row["starts_at"].astimezone(zoneinfo.ZoneInfo(row["timezone"]))
        - timedelta(seconds=rt.settings.refund_deadline),
        ga=[
            GaAvailability(name=a.name, category=a.category, capacity=a.capacity, remaining=a.capacity)
            for a in layout.ga
        ],
    )
    return await live_seat_state(rt, detail)


async def live_seat_state(rt: Runtime, detail: ScreeningDetail) -> ScreeningDetail:
    """Fill `seats`, `seq` and each `ga[].remaining` from the live map, for clients without a socket.

    A client that then opens the WebSocket with `?since=<seq>` gets exactly the changes after this.
    """
    seat_map = await rt.holds.inventory.snapshot(detail.id)
    detail.seats = seat_map.seats
    detail.seq = seat_map.seq
    for area in detail.ga:
        area.remaining = seat_map.ga.get(area.name, area.capacity)
    detail.availability = seat_map_availability(
        detail.auditorium.seat_count, detail.auditorium.ga_capacity, seat_map.seats,
        sum(area.remaining for area in detail.ga), rt.settings.nearly_sold_out,
    )  # fmt: skip
    return detail


async def _sees_drafts(request: Request) -> bool | frozenset[int]:
    """Admins see every draft, an organizer those of its cinemas; anyone else (including a
    caller with a stale token) none."""
    try:
        principal = await auth.authenticate(request)
    except Unauthorized:
        return False
    if principal is not None and principal.role == "organizer":
        return principal.cinemas
    return principal is not None and principal.has_role("admin")


def _query_date(request: Request) -> date | None:
    raw = request.query_params.get("date")
    if not raw:
        return None
    try:
        if _DATE.match(raw) is None:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("`date` must be a day as YYYY-MM-DD.", path="$.date") from None


def _query_after(request: Request) -> tuple[datetime | None, int]:
    cursor = request.query_params.get("cursor")
    if not cursor:
        return None, 0
    micros, ident = (ascii_int(part) for part in decode_cursor(cursor, 2))
    try:
        if micros is None or ident is None:
            raise ValueError(cursor)
        return _EPOCH + timedelta(microseconds=micros), ident
    except (ValueError, OverflowError):
        raise InvalidInput("The cursor is not valid.", path="$.cursor") from None


@documented(
    "List screenings by start time; filter by city, cinema, movie and day (YYYY-MM-DD, in the "
    "cinema's time zone; without a day, those that have not ended); each with its live "
    "availability (available, few_left, sold_out)",
    query=(
        "city",
        int_param("cinema", 1, INT64_MAX),
        int_param("movie", 1, INT64_MAX),
        "date:date",
        "cursor",
        int_param("limit", 1, 100),
    ),
    responses={200: ScreeningPage},
    tags=("screenings",),
)
async def list_screenings(request: Request) -> Response:
    limit = query_int(request, "limit", 20, minimum=1, maximum=100)
    city = request.query_params.get("city") or None
    cinema = query_int(request, "cinema", 0, minimum=1, maximum=INT64_MAX) or None
    movie = query_int(request, "movie", 0, minimum=1, maximum=INT64_MAX) or None
    day = _query_date(request)
    after, after_id = _query_after(request)
    drafts = await _sees_drafts(request)
    every, some = (drafts, []) if isinstance(drafts, bool) else (False, sorted(drafts))
    rt = runtime(request)
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            LIST_SCREENINGS, city, cinema, movie, day, every, after, after_id, limit + 1, some
        )
    items = [_screening(row) for row in rows[:limit]]
    live = await live_availability(rt, [_capacity(row) for row in rows[:limit]])
    for item in items:
        item.availability = live[item.id]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor((last["starts_at"] - _EPOCH) // timedelta(microseconds=1), last["id"])
    return respond(ScreeningPage(items=items, next_cursor=next_cursor))


@documented(
    "One screening with its cinema, auditorium, movie, seat layout, prices and seat states",
    responses={200: ScreeningDetail},
    tags=("screenings",),
)
async def get_screening(request: Request) -> Response:
    rt = runtime(request)
    drafts = await _sees_drafts(request)
    detail = await screening_detail(rt, path_int(request, "id"), include_drafts=bool(drafts))
    if detail.status == "draft" and isinstance(drafts, frozenset) and detail.cinema.id not in drafts:
        raise NotFound("No such screening.")
    return respond(detail)


routes: list[BaseRoute] = [
    Route("/screenings", list_screenings, methods=["GET"]),
    Route("/screenings/{id:int}", get_screening, methods=["GET"]),
]
