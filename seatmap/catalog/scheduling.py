"""Scheduling: the admin writes of screenings, and the rules every screening keeps.

- Two screenings that are not cancelled never overlap in one auditorium. The database's
  exclusion constraint `screenings_no_overlap` is the guard, not a check-then-insert, so two
  admins creating overlapping screenings at the same moment get one 201 and one 409.
- Every seat category the layout uses has a price (integer minor units, >= 0); a screening
  without one could not sell those seats (422 naming the missing categories).
- Times come in as ISO 8601 with an offset: a naive time is ambiguous (422).
- A screening with tickets is not deleted (409 has_tickets): it is cancelled instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Final, Literal

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.api import Id, documented, path_int, read_body, respond
from seatmap.catalog.layouts import CATEGORIES
from seatmap.catalog.screenings import Screening, fetch_screening
from seatmap.db import AnyConnection
from seatmap.errors import Conflict, HasTickets, InvalidInput, NotFound, ScreeningOverlap
from seatmap.runtime import runtime

CLEANING: Final = timedelta(minutes=15)
LONGEST: Final = timedelta(hours=24)

# Checked in `_checked_prices` rather than by msgspec, whose error path would be `$.prices[...]`.
Money = Annotated[int, msgspec.Meta(description="integer minor units, >= 0")]
MAX_PRICE: Final = 10**12
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["IDR"])]
Aware = Annotated[datetime, msgspec.Meta(tz=True, description="ISO 8601 with an offset")]
Status = Literal["scheduled", "draft"]


class ScreeningIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new screening. Without `ends_at` it ends after the movie plus 15 minutes of cleaning."""

    auditorium_id: Id
    movie_id: Id
    starts_at: Aware
    prices: dict[str, Money]
    ends_at: Aware | None = None
    currency: Currency = "IDR"
    status: Status = "scheduled"
    holder_names_required: bool = False


class ScreeningPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields to change. A new start or movie without `ends_at` recomputes the end;
    new `prices` replace all the old ones."""

    movie_id: Id | UnsetType = UNSET
    starts_at: Aware | UnsetType = UNSET
    ends_at: Aware | UnsetType = UNSET
    prices: dict[str, Money] | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    holder_names_required: bool | UnsetType = UNSET


# ---- SQL --------------------------------------------------------------------------------------

# FOR SHARE: a layout change (FOR UPDATE on the hall) waits for this screening, then sees it.
LOCK_HALL: Final = "SELECT categories FROM auditoriums WHERE id = $1 FOR SHARE"
LOCK_MOVIE: Final = "SELECT duration_minutes FROM movies WHERE id = $1 FOR SHARE"
INSERT_SCREENING: Final = """
INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at, currency, status, holder_names_required)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
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
                      currency = coalesce($5, currency), status = coalesce($6, status),
                      holder_names_required = coalesce($7, holder_names_required)
WHERE id = $1
"""
FIND_OVERLAP: Final = """
SELECT id FROM screenings
WHERE auditorium_id = $1 AND status <> 'cancelled' AND id <> $4
  AND tstzrange(starts_at, ends_at) && tstzrange($2, $3)
ORDER BY starts_at LIMIT 1
"""
DELETE_SCREENING: Final = "DELETE FROM screenings WHERE id = $1 RETURNING id"


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
    scope="cinema",
    tags=("screenings",),
)
async def create_screening(request: Request) -> Response:
    who = await scope.require_scoped(request)
    body = await read_body(request, ScreeningIn)
    async with runtime(request).pool.acquire() as conn:
        await scope.check_auditorium(conn, who, body.auditorium_id)
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
                    body.holder_names_required,
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
    scope="cinema",
    tags=("screenings",),
)
async def patch_screening(request: Request) -> Response:
    who = await scope.require_scoped(request)
    screening_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        await scope.check_screening(conn, who, screening_id)
    body = await read_body(request, ScreeningPatch)
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
                    None if isinstance(body.holder_names_required, UnsetType) else body.holder_names_required,
                )
                if not isinstance(body.prices, UnsetType):
                    prices = _checked_prices(body.prices, list(row["categories"]))
                    await conn.execute(DELETE_PRICES, screening_id)
                    await conn.execute(INSERT_PRICES, screening_id, list(prices), list(prices.values()))
        except asyncpg.ExclusionViolationError:
            raise await _overlap(conn, auditorium_id, starts_at, ends_at, screening_id) from None
        updated = await fetch_screening(conn, screening_id)
    if updated.status != row["status"] or updated.starts_at != row["starts_at"]:
        # Holds check status and start time in Redis: tell the live map (and every viewer).
        await runtime(request).holds.inventory.set_status(screening_id, updated.status, updated.starts_at)
    return respond(updated)


@documented(
    "Delete a screening without tickets (409 has_tickets otherwise: cancel it instead)",
    responses={204: None, 409: None},
    auth="admin",
    scope="cinema",
    tags=("screenings",),
)
async def delete_screening(request: Request) -> Response:
    who = await scope.require_scoped(request)
    async with runtime(request).pool.acquire() as conn:
        await scope.check_screening(conn, who, path_int(request, "id"))
        try:
            deleted = await conn.fetchval(DELETE_SCREENING, path_int(request, "id"))
        except asyncpg.ForeignKeyViolationError:
            raise HasTickets() from None
    if deleted is None:
        raise NotFound("No such screening.")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/admin/screenings", create_screening, methods=["POST"]),
    Route("/admin/screenings/{id:int}", patch_screening, methods=["PATCH"]),
    Route("/admin/screenings/{id:int}", delete_screening, methods=["DELETE"]),
]
