"""Screenings: one showing of a movie (or event) in an auditorium, with its prices.

Reads are public (drafts only for admins); writes need the admin role. The rules:

- Two screenings that are not cancelled never overlap in one auditorium. The database's
  exclusion constraint `screenings_no_overlap` is the guard, not a check-then-insert, so two
  admins creating overlapping screenings at the same moment get one 201 and one 409.
- Every seat category the layout uses has a price (integer minor units, >= 0); a screening
  without one could not sell those seats (422 naming the missing categories).
- Times come in as ISO 8601 with an offset (a naive time is ambiguous: 422) and go out in the
  cinema's own time zone, with its offset. `?date=` means a day in that time zone.
- Lists page by the keyset (starts_at, id), so a screening added while a client pages through
  never shifts the pages: nothing is skipped or repeated.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final, Literal

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap import auth
from seatmap.api import (
    Page,
    decode_cursor,
    documented,
    encode_cursor,
    path_int,
    query_int,
    read_body,
    respond,
)
from seatmap.cinemas import Auditorium, Cinema
from seatmap.db import AnyConnection
from seatmap.errors import Conflict, HasTickets, InvalidInput, NotFound, ScreeningOverlap, Unauthorized
from seatmap.layouts import CATEGORIES, Layout
from seatmap.movies import Movie
from seatmap.runtime import Runtime, runtime

CLEANING: Final = timedelta(minutes=15)
LONGEST: Final = timedelta(hours=24)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_ID: Final = 2**63 - 1

# Checked in `_checked_prices` rather than by msgspec, whose error path would be `$.prices[...]`.
Money = Annotated[int, msgspec.Meta(description="integer minor units, >= 0")]
MAX_PRICE: Final = 10**12
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["IDR"])]
Aware = Annotated[datetime, msgspec.Meta(tz=True, description="ISO 8601 with an offset")]
Status = Literal["scheduled", "draft"]

# ---- wire shapes ----------------------------------------------------------------------------


class ScreeningIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new screening. Without `ends_at` it ends after the movie plus 15 minutes of cleaning."""

    auditorium_id: int
    movie_id: int
    starts_at: Aware
    prices: dict[str, Money]
    ends_at: Aware | None = None
    currency: Currency = "IDR"
    status: Status = "scheduled"


class ScreeningPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields to change. A new start or movie without `ends_at` recomputes the end;
    new `prices` replace all the old ones."""

    movie_id: int | UnsetType = UNSET
    starts_at: Aware | UnsetType = UNSET
    ends_at: Aware | UnsetType = UNSET
    prices: dict[str, Money] | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    status: Status | UnsetType = UNSET


class Screening(msgspec.Struct, kw_only=True):
    id: int
    status: str
    starts_at: datetime
    ends_at: datetime
    currency: str
    prices: dict[str, int]
    cinema: Cinema
    auditorium: Auditorium
    movie: Movie


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


# ---- SQL --------------------------------------------------------------------------------------

_SELECT: Final = """
SELECT s.id, s.status, s.starts_at, s.ends_at, s.currency,
       coalesce((SELECT jsonb_object_agg(p.category, p.amount) FROM screening_prices p
                 WHERE p.screening_id = s.id), '{}') AS prices,
       c.id AS cinema_id, c.name AS cinema_name, c.city, c.timezone, c.address,
       a.id AS auditorium_id, a.name AS auditorium_name, a.seat_count, a.ga_capacity, a.categories,
       m.id AS movie_id, m.title, m.kind, m.duration_minutes, m.rating, m.description
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
  AND (s.status <> 'draft' OR $5::boolean)
  AND ($6::timestamptz IS NULL OR (s.starts_at, s.id) > ($6::timestamptz, $7::bigint))
ORDER BY s.starts_at, s.id
LIMIT $8
"""
)
GET_SCREENING: Final = _SELECT + _FROM + "WHERE s.id = $1"
GET_DETAIL: Final = _SELECT + ", a.layout::text AS layout" + _FROM + "WHERE s.id = $1"
# FOR SHARE: a layout change (FOR UPDATE on the hall) waits for this screening, then sees it.
LOCK_HALL: Final = "SELECT categories FROM auditoriums WHERE id = $1 FOR SHARE"
LOCK_MOVIE: Final = "SELECT duration_minutes FROM movies WHERE id = $1 FOR SHARE"
INSERT_SCREENING: Final = """
INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at, currency, status)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
"""
INSERT_PRICES: Final = """
INSERT INTO screening_prices (screening_id, category, amount)
SELECT $1, category, amount FROM unnest($2::text[], $3::bigint[]) AS p (category, amount)
"""
DELETE_PRICES: Final = "DELETE FROM screening_prices WHERE screening_id = $1"
LOCK_SCREENING: Final = """
SELECT s.auditorium_id, s.movie_id, s.starts_at, s.ends_at, s.status, a.categories
FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id
WHERE s.id = $1 FOR UPDATE OF s
"""
UPDATE_SCREENING: Final = """
UPDATE screenings SET movie_id = $2, starts_at = $3, ends_at = $4,
                      currency = coalesce($5, currency), status = coalesce($6, status)
WHERE id = $1
"""
FIND_OVERLAP: Final = """
SELECT id FROM screenings
WHERE auditorium_id = $1 AND status <> 'cancelled' AND id <> $4
  AND tstzrange(starts_at, ends_at) && tstzrange($2, $3)
ORDER BY starts_at LIMIT 1
"""
DELETE_SCREENING: Final = "DELETE FROM screenings WHERE id = $1 RETURNING id"


# ---- reading ----------------------------------------------------------------------------------


def _screening(row: asyncpg.Record) -> Screening:
    zone = zoneinfo.ZoneInfo(row["timezone"])
    return Screening(
        id=row["id"],
        status=row["status"],
        starts_at=row["starts_at"].astimezone(zone),
        ends_at=row["ends_at"].astimezone(zone),
        currency=row["currency"],
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
    )


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
    detail = ScreeningDetail(
        **msgspec.structs.asdict(_screening(row)),
        layout=layout,
        ga=[
            GaAvailability(name=a.name, category=a.category, capacity=a.capacity, remaining=a.capacity)
            for a in layout.ga
        ],
    )
    return await live_seat_state(rt, detail)


async def live_seat_state(rt: Runtime, detail: ScreeningDetail) -> ScreeningDetail:
    """HOOK for the live seat map: fill `seats`, `seq` and each `ga[].remaining` from Redis.

    The catalog only knows the layout, so until the live seat state plugs in here every seat
    is free and every GA area has its whole capacity.
    """
    return detail


async def _sees_drafts(request: Request) -> bool:
    """Admins see drafts; anyone else (including a caller with a stale token) does not."""
    try:
        principal = await auth.authenticate(request)
    except Unauthorized:
        return False
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
    micros, ident = decode_cursor(cursor, 2)
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), int(ident)
    except (ValueError, OverflowError):
        raise InvalidInput("The cursor is not valid.", path="$.cursor") from None


@documented(
    "List screenings by start time; filter by city, cinema, movie and day (YYYY-MM-DD, in the "
    "cinema's time zone; without a day, those that have not ended)",
    query=("city", "cinema", "movie", "date", "cursor", "limit"),
    responses={200: ScreeningPage},
    tags=("screenings",),
)
async def list_screenings(request: Request) -> Response:
    limit = query_int(request, "limit", 20, minimum=1, maximum=100)
    city = request.query_params.get("city") or None
    cinema = query_int(request, "cinema", 0, minimum=1, maximum=_MAX_ID) or None
    movie = query_int(request, "movie", 0, minimum=1, maximum=_MAX_ID) or None
    day = _query_date(request)
    after, after_id = _query_after(request)
    drafts = await _sees_drafts(request)
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST_SCREENINGS, city, cinema, movie, day, drafts, after, after_id, limit + 1)
    items = [_screening(row) for row in rows[:limit]]
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
    detail = await screening_detail(rt, path_int(request, "id"), include_drafts=await _sees_drafts(request))
    return respond(detail)


# ---- writing ----------------------------------------------------------------------------------


def _checked_times(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise InvalidInput("A screening must end after it starts.", path="$.ends_at")
    if ends_at - starts_at > LONGEST:
        raise InvalidInput("A screening lasts at most 24 hours.", path="$.ends_at")


def _checked_prices(prices: dict[str, int], categories: list[str]) -> dict[str, int]:
    """Every category the layout uses needs a price; a price for a known category the layout
    does not use is kept (a shared price list), an unknown category is an error."""
    for category in prices:
        if category not in CATEGORIES:
            raise InvalidInput(
                f"Unknown seat category {category!r}; known: {', '.join(CATEGORIES)}.",
                path=f"$.prices.{category}",
            )
        if not 0 <= prices[category] <= MAX_PRICE:
            raise InvalidInput(
                f"The price for {category} must be from 0 to {MAX_PRICE} (integer minor units).",
                path=f"$.prices.{category}",
            )
    missing = [c for c in categories if c not in prices]
    if missing:
        raise InvalidInput(
            f"Missing a price for {', '.join(missing)}: the auditorium has seats of "
            f"{'that category' if len(missing) == 1 else 'those categories'}.",
            path="$.prices",
            missing=missing,
        )
    return prices


async def _movie_minutes(conn: AnyConnection, movie_id: int) -> int:
    minutes = await conn.fetchval(LOCK_MOVIE, movie_id)
    if minutes is None:
        raise InvalidInput("No such movie.", path="$.movie_id")
    assert isinstance(minutes, int)
    return minutes


async def _overlap(
    conn: AnyConnection, auditorium_id: int, starts: datetime, ends: datetime, own: int
) -> ScreeningOverlap:
    """The 409, naming the screening in the way when it is still there."""
    other = await conn.fetchval(FIND_OVERLAP, auditorium_id, starts, ends, own)
    return ScreeningOverlap() if other is None else ScreeningOverlap(conflicts_with=other)


@documented(
    "Create a screening (409 screening_overlap when the auditorium is in use then)",
    body=ScreeningIn,
    responses={201: Screening},
    auth="admin",
    tags=("screenings",),
)
async def create_screening(request: Request) -> Response:
    await auth.require(request, "admin")
    body = await read_body(request, ScreeningIn)
    async with runtime(request).pool.acquire() as conn:
        ends_at = body.ends_at
        try:
            async with conn.transaction():
                categories = await conn.fetchval(LOCK_HALL, body.auditorium_id)
                if categories is None:
                    raise InvalidInput("No such auditorium.", path="$.auditorium_id")
                minutes = await _movie_minutes(conn, body.movie_id)
                ends_at = ends_at or body.starts_at + timedelta(minutes=minutes) + CLEANING
                _checked_times(body.starts_at, ends_at)
                prices = _checked_prices(body.prices, categories)
                screening_id = await conn.fetchval(
                    INSERT_SCREENING,
                    body.auditorium_id,
                    body.movie_id,
                    body.starts_at,
                    ends_at,
                    body.currency,
                    body.status,
                )
                await conn.execute(INSERT_PRICES, screening_id, list(prices), list(prices.values()))
        except asyncpg.ExclusionViolationError:
            assert ends_at is not None
            raise await _overlap(conn, body.auditorium_id, body.starts_at, ends_at, 0) from None
        created = await fetch_screening(conn, screening_id)
    return respond(created, 201)


@documented(
    "Change a screening's movie, times, prices, currency or status",
    body=ScreeningPatch,
    responses={200: Screening},
    auth="admin",
    tags=("screenings",),
)
async def patch_screening(request: Request) -> Response:
    await auth.require(request, "admin")
    body = await read_body(request, ScreeningPatch)
    screening_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        try:
            async with conn.transaction():
                row = await conn.fetchrow(LOCK_SCREENING, screening_id)
                if row is None:
                    raise NotFound("No such screening.")
                if row["status"] == "cancelled":
                    raise Conflict("A cancelled screening cannot be changed.")
                auditorium_id: int = row["auditorium_id"]
                movie_id = row["movie_id"] if isinstance(body.movie_id, UnsetType) else body.movie_id
                starts_at = row["starts_at"] if isinstance(body.starts_at, UnsetType) else body.starts_at
                if not isinstance(body.ends_at, UnsetType):
                    ends_at = body.ends_at
                elif isinstance(body.starts_at, UnsetType) and isinstance(body.movie_id, UnsetType):
                    ends_at = row["ends_at"]
                else:
                    ends_at = starts_at + timedelta(minutes=await _movie_minutes(conn, movie_id)) + CLEANING
                if not isinstance(body.movie_id, UnsetType):
                    await _movie_minutes(conn, movie_id)  # exists, and stays while we commit
                _checked_times(starts_at, ends_at)
                await conn.execute(
                    UPDATE_SCREENING,
                    screening_id,
                    movie_id,
                    starts_at,
                    ends_at,
                    None if isinstance(body.currency, UnsetType) else body.currency,
                    None if isinstance(body.status, UnsetType) else body.status,
                )
                if not isinstance(body.prices, UnsetType):
                    prices = _checked_prices(body.prices, list(row["categories"]))
                    await conn.execute(DELETE_PRICES, screening_id)
                    await conn.execute(INSERT_PRICES, screening_id, list(prices), list(prices.values()))
        except asyncpg.ExclusionViolationError:
            raise await _overlap(conn, auditorium_id, starts_at, ends_at, screening_id) from None
        updated = await fetch_screening(conn, screening_id)
    return respond(updated)


@documented(
    "Delete a screening without tickets (409 has_tickets otherwise: cancel it instead)",
    auth="admin",
    tags=("screenings",),
)
async def delete_screening(request: Request) -> Response:
    await auth.require(request, "admin")
    async with runtime(request).pool.acquire() as conn:
        try:
            deleted = await conn.fetchval(DELETE_SCREENING, path_int(request, "id"))
        except asyncpg.ForeignKeyViolationError:
            raise HasTickets() from None
    if deleted is None:
        raise NotFound("No such screening.")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/screenings", list_screenings, methods=["GET"]),
    Route("/screenings/{id:int}", get_screening, methods=["GET"]),
    Route("/admin/screenings", create_screening, methods=["POST"]),
    Route("/admin/screenings/{id:int}", patch_screening, methods=["PATCH"]),
    Route("/admin/screenings/{id:int}", delete_screening, methods=["DELETE"]),
]
