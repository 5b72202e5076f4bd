"""Auditoriums: the halls of a cinema, each with its seat layout.

Reads are public; writes need the admin role. A layout is validated and normalised by
`seatmap.catalog.layouts` and stored in one transaction three ways: the submission (for editing), the
normalised `Layout` as JSON (served as is, never rebuilt per request), and one row per seat and
GA area (what holds, blocks and tickets refer to). The layout is frozen once a screening uses the
hall, so the seats a ticket points at never change under it.
"""

from __future__ import annotations

from typing import Final

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.api import (
    Page,
    cursor_id,
    documented,
    encode_cursor,
    int_param,
    path_int,
    query_int,
    read_body,
    respond,
)
from seatmap.catalog.cinemas import GET_CINEMA, Name
from seatmap.catalog.layouts import Layout, LayoutSpec, normalise
from seatmap.db import AnyConnection
from seatmap.errors import Conflict, InUse, NotFound
from seatmap.runtime import runtime

# ---- wire shapes ----------------------------------------------------------------------------


class AuditoriumIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A hall and its layout (compact `rows` or explicit `seats`, plus `ga` areas)."""

    name: Name
    layout: LayoutSpec


class Auditorium(msgspec.Struct, kw_only=True):
    """A hall in brief: `categories` are those its layout uses (a screening prices each)."""

    id: int
    cinema_id: int
    name: str
    seat_count: int
    ga_capacity: int
    categories: list[str]


class AuditoriumPage(Page):
    items: list[Auditorium]


class AuditoriumDetail(Auditorium, kw_only=True):
    """A hall with its normalised `layout` (what clients render) and the `source` it was made from."""

    layout: Layout
    source: LayoutSpec


# ---- SQL --------------------------------------------------------------------------------------

LIST_AUDITORIUMS: Final = """
SELECT id, cinema_id, name, seat_count, ga_capacity, categories FROM auditoriums
WHERE cinema_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""
GET_AUDITORIUM: Final = """
SELECT id, cinema_id, name, seat_count, ga_capacity, categories,
       layout::text AS layout, source::text AS source
FROM auditoriums WHERE id = $1
"""
LOCK_CINEMA: Final = "SELECT id FROM cinemas WHERE id = $1 FOR SHARE"
INSERT_AUDITORIUM: Final = """
INSERT INTO auditoriums (cinema_id, name, source, layout, categories, seat_count, ga_capacity)
VALUES ($1, $2, $3::text::jsonb, $4::text::jsonb, $5, $6, $7)
RETURNING id
"""
LOCK_AUDITORIUM: Final = "SELECT layout::text AS layout FROM auditoriums WHERE id = $1 FOR UPDATE"
IS_SCHEDULED: Final = "SELECT EXISTS (SELECT 1 FROM screenings WHERE auditorium_id = $1)"
UPDATE_AUDITORIUM: Final = """
UPDATE auditoriums SET name = $2, source = $3::text::jsonb, layout = $4::text::jsonb,
                       categories = $5, seat_count = $6, ga_capacity = $7
WHERE id = $1
"""
DELETE_PLACES: Final = """
WITH gone AS (DELETE FROM seats WHERE auditorium_id = $1)
DELETE FROM ga_areas WHERE auditorium_id = $1
"""
DELETE_AUDITORIUM: Final = "DELETE FROM auditoriums WHERE id = $1 RETURNING id"
SEAT_COLUMNS: Final = [
    "auditorium_id",
    "label",
    "row_label",
    "number",
    "x",
    "y",
    "category",
    "accessible",
    "companion",
]
GA_COLUMNS: Final = ["auditorium_id", "name", "capacity", "category"]

_encoder = msgspec.json.Encoder()


# ---- the data, for other modules (demo data and tests use these too) ----------------------


def _auditorium(row: asyncpg.Record) -> Auditorium:
    return Auditorium(
        id=row["id"],
        cinema_id=row["cinema_id"],
        name=row["name"],
        seat_count=row["seat_count"],
        ga_capacity=row["ga_capacity"],
        categories=list(row["categories"]),
    )


def _layout_args(spec: LayoutSpec, layout: Layout) -> tuple[str, str, list[str], int, int]:
    return (
        _encoder.encode(spec).decode(),
        _encoder.encode(layout).decode(),
        layout.categories,
        len(layout.seats),
        layout.ga_capacity,
    )


async def _insert_places(conn: AnyConnection, auditorium_id: int, layout: Layout) -> None:
    """Seats by COPY: a 600-seat hall is one round trip, not 600."""
    if layout.seats:
        await conn.copy_records_to_table(
            "seats",
            columns=SEAT_COLUMNS,
            records=[
                (auditorium_id, s.label, s.row, s.number, s.x, s.y, s.category, s.accessible, s.companion)
                for s in layout.seats
            ],
        )
    if layout.ga:
        await conn.copy_records_to_table(
            "ga_areas",
            columns=GA_COLUMNS,
            records=[(auditorium_id, a.name, a.capacity, a.category) for a in layout.ga],
        )


async def insert_auditorium(
    conn: AnyConnection, cinema_id: int, name: str, spec: LayoutSpec
) -> AuditoriumDetail:
    """Validate `spec` and create the hall with its seats and GA areas.

    Call inside a transaction: on any error nothing of the hall remains.
    """
    layout = normalise(spec, "$.layout")
    if await conn.fetchval(LOCK_CINEMA, cinema_id) is None:
        raise NotFound("No such cinema.")
    try:
        auditorium_id = await conn.fetchval(INSERT_AUDITORIUM, cinema_id, name, *_layout_args(spec, layout))
    except asyncpg.UniqueViolationError:
        raise Conflict(f"This cinema already has an auditorium named {name!r}.", path="$.name") from None
    await _insert_places(conn, auditorium_id, layout)
    return AuditoriumDetail(
        id=auditorium_id,
        cinema_id=cinema_id,
        name=name,
        seat_count=len(layout.seats),
        ga_capacity=layout.ga_capacity,
        categories=layout.categories,
        layout=layout,
        source=spec,
    )


async def fetch_auditorium(conn: AnyConnection, auditorium_id: int) -> AuditoriumDetail:
    row = await conn.fetchrow(GET_AUDITORIUM, auditorium_id)
    if row is None:
        raise NotFound("No such auditorium.")
    brief = _auditorium(row)
    return AuditoriumDetail(
        **msgspec.structs.asdict(brief),
        layout=msgspec.json.decode(row["layout"], type=Layout),
        source=msgspec.json.decode(row["source"], type=LayoutSpec),
    )


# ---- auditoriums ------------------------------------------------------------------------------


@documented(
    "List the auditoriums of a cinema",
    query=("cursor", int_param("limit", 1, 100)),
    responses={200: AuditoriumPage},
    tags=("auditoriums",),
)
async def list_auditoriums(request: Request) -> Response:
    limit = query_int(request, "limit", 50, minimum=1, maximum=100)
    cinema_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        if await conn.fetchval(GET_CINEMA, cinema_id) is None:
            raise NotFound("No such cinema.")
        rows = await conn.fetch(LIST_AUDITORIUMS, cinema_id, cursor_id(request), limit + 1)
    items = [_auditorium(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(AuditoriumPage(items=items, next_cursor=next_cursor))


@documented("One auditorium with its seat layout", responses={200: AuditoriumDetail}, tags=("auditoriums",))
async def get_auditorium(request: Request) -> Response:
    async with runtime(request).pool.acquire() as conn:
        return respond(await fetch_auditorium(conn, path_int(request, "id")))


@documented(
    "Create an auditorium in a cinema, with its layout",
    body=AuditoriumIn,
    responses={201: AuditoriumDetail},
    auth="admin",
    scope="cinema",
    tags=("auditoriums",),
)
async def create_auditorium(request: Request) -> Response:
    await scope.require_cinema(request, path_int(request, "id"))
    body = await read_body(request, AuditoriumIn)
    async with runtime(request).pool.acquire() as conn, conn.transaction():
        created = await insert_auditorium(conn, path_int(request, "id"), body.name, body.layout)
    return respond(created, 201)


@documented(
    "Rename an auditorium or change its layout (409 for a layout change once screenings use it)",
    body=AuditoriumIn,
    responses={200: AuditoriumDetail},
    auth="admin",
    scope="cinema",
    tags=("auditoriums",),
)
async def replace_auditorium(request: Request) -> Response:
    who = await scope.require_scoped(request)
    auditorium_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        await scope.check_auditorium(conn, who, auditorium_id)
    body = await read_body(request, AuditoriumIn)
    layout = normalise(body.layout, "$.layout")
    async with runtime(request).pool.acquire() as conn, conn.transaction():
        # FOR UPDATE waits for (and then sees) a screening being created with the old layout.
        current = await conn.fetchval(LOCK_AUDITORIUM, auditorium_id)
        if current is None:
            raise NotFound("No such auditorium.")
        changed = msgspec.json.decode(current, type=Layout) != layout
        if changed and await conn.fetchval(IS_SCHEDULED, auditorium_id):
            raise InUse(
                "Screenings use this auditorium, so its layout can no longer change; "
                "create a new auditorium instead."
            )
        try:
            await conn.execute(
                UPDATE_AUDITORIUM, auditorium_id, body.name, *_layout_args(body.layout, layout)
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"This cinema already has an auditorium named {body.name!r}.", path="$.name"
            ) from None
        if changed:
            await conn.execute(DELETE_PLACES, auditorium_id)
            await _insert_places(conn, auditorium_id, layout)
        updated = await fetch_auditorium(conn, auditorium_id)
    return respond(updated)


@documented(
    "Delete an auditorium without screenings (409 otherwise)",
    responses={204: None, 409: None},
    auth="admin",
    scope="cinema",
    tags=("auditoriums",),
)
async def delete_auditorium(request: Request) -> Response:
    who = await scope.require_scoped(request)
    async with runtime(request).pool.acquire() as conn:
        await scope.check_auditorium(conn, who, path_int(request, "id"))
        try:
            deleted = await conn.fetchval(DELETE_AUDITORIUM, path_int(request, "id"))
        except asyncpg.ForeignKeyViolationError:
            raise InUse("Screenings use this auditorium; delete them first.") from None
    if deleted is None:
        raise NotFound("No such auditorium.")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/cinemas/{id:int}/auditoriums", list_auditoriums, methods=["GET"]),
    Route("/auditoriums/{id:int}", get_auditorium, methods=["GET"]),
    Route("/admin/cinemas/{id:int}/auditoriums", create_auditorium, methods=["POST"]),
    Route("/admin/auditoriums/{id:int}", replace_auditorium, methods=["PUT"]),
    Route("/admin/auditoriums/{id:int}", delete_auditorium, methods=["DELETE"]),
]
