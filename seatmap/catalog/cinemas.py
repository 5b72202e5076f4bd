"""Cinemas: where screenings happen, in which city, and in which time zone.

Reads are public; writes need the admin role. The time zone is an IANA name that both Python
and PostgreSQL know: screening times are shown in it and `?date=` filters days in it.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Final

import asyncpg
import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import auth
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
from seatmap.db import AnyConnection
from seatmap.errors import InUse, InvalidInput, NotFound
from seatmap.runtime import runtime

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
City = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["Asia/Jakarta"])]
Address = Annotated[str, msgspec.Meta(max_length=500)]

# ---- wire shapes ----------------------------------------------------------------------------


class CinemaIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new cinema, or the whole of one (PUT). `timezone` is an IANA name."""

    name: Name
    city: City
    timezone: TimeZone
    address: Address = ""


class CinemaPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields to change."""

    name: Name | UnsetType = UNSET
    city: City | UnsetType = UNSET
    timezone: TimeZone | UnsetType = UNSET
    address: Address | UnsetType = UNSET


class Cinema(msgspec.Struct, kw_only=True):
    id: int
    name: str
    city: str
    timezone: str
    address: str


class CinemaPage(Page):
    items: list[Cinema]


# ---- SQL --------------------------------------------------------------------------------------

LIST_CINEMAS: Final = """
SELECT id, name, city, timezone, address FROM cinemas
WHERE ($1::text IS NULL OR lower(city) = lower($1)) AND id > $2
ORDER BY id LIMIT $3
"""
GET_CINEMA: Final = "SELECT id, name, city, timezone, address FROM cinemas WHERE id = $1"
INSERT_CINEMA: Final = """
INSERT INTO cinemas (name, city, timezone, address) VALUES ($1, $2, $3, $4)
RETURNING id, name, city, timezone, address
"""
UPDATE_CINEMA: Final = """
UPDATE cinemas SET name = coalesce($2, name), city = coalesce($3, city),
                   timezone = coalesce($4, timezone), address = coalesce($5, address)
WHERE id = $1 RETURNING id, name, city, timezone, address
"""
DELETE_CINEMA: Final = "DELETE FROM cinemas WHERE id = $1 RETURNING id"
# Also proves PostgreSQL knows the zone: the screening date filter converts with it.
CHECK_TIMEZONE: Final = "SELECT now() AT TIME ZONE $1"


def check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"Unknown time zone {name!r}; use an IANA name such as 'Asia/Jakarta'.", path="$.timezone"
        ) from None
    return name


async def _check_timezone_in_db(conn: AnyConnection, name: str) -> None:
    try:
        await conn.execute(CHECK_TIMEZONE, name)
    except asyncpg.InvalidParameterValueError:
        raise InvalidInput(f"PostgreSQL does not know the time zone {name!r}.", path="$.timezone") from None


def _cinema(row: asyncpg.Record) -> Cinema:
    return Cinema(
        id=row["id"], name=row["name"], city=row["city"], timezone=row["timezone"], address=row["address"]
    )


# ---- cinemas ----------------------------------------------------------------------------------


@documented(
    "List cinemas, optionally in one city",
    query=("city", "cursor", int_param("limit", 1, 100)),
    responses={200: CinemaPage},
    tags=("cinemas",),
)
async def list_cinemas(request: Request) -> Response:
    limit = query_int(request, "limit", 20, minimum=1, maximum=100)
    city = request.query_params.get("city") or None
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST_CINEMAS, city, cursor_id(request), limit + 1)
    items = [_cinema(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(CinemaPage(items=items, next_cursor=next_cursor))


@documented("One cinema", responses={200: Cinema}, tags=("cinemas",))
async def get_cinema(request: Request) -> Response:
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(GET_CINEMA, path_int(request, "id"))
    if row is None:
        raise NotFound("No such cinema.")
    return respond(_cinema(row))


@documented("Create a cinema", body=CinemaIn, responses={201: Cinema}, auth="admin", tags=("cinemas",))
async def create_cinema(request: Request) -> Response:
    await auth.require(request, "admin")
    body = await read_body(request, CinemaIn)
    check_timezone(body.timezone)
    async with runtime(request).pool.acquire() as conn:
        await _check_timezone_in_db(conn, body.timezone)
        row = await conn.fetchrow(INSERT_CINEMA, body.name, body.city, body.timezone, body.address)
    assert row is not None
    return respond(_cinema(row), 201)


async def _update_cinema(request: Request, body: CinemaIn | CinemaPatch) -> Response:
    values = [
        None if value is UNSET else value for value in (body.name, body.city, body.timezone, body.address)
    ]
    if isinstance(body.timezone, str):
        check_timezone(body.timezone)
    async with runtime(request).pool.acquire() as conn:
        if isinstance(body.timezone, str):
            await _check_timezone_in_db(conn, body.timezone)
        row = await conn.fetchrow(UPDATE_CINEMA, path_int(request, "id"), *values)
    if row is None:
        raise NotFound("No such cinema.")
    return respond(_cinema(row))


@documented("Replace a cinema", body=CinemaIn, responses={200: Cinema}, auth="admin", tags=("cinemas",))
async def replace_cinema(request: Request) -> Response:
    await auth.require(request, "admin")
    return await _update_cinema(request, await read_body(request, CinemaIn))


@documented(
    "Change some fields of a cinema",
    body=CinemaPatch,
    responses={200: Cinema},
    auth="admin",
    tags=("cinemas",),
)
async def patch_cinema(request: Request) -> Response:
    await auth.require(request, "admin")
    return await _update_cinema(request, await read_body(request, CinemaPatch))


@documented(
    "Delete a cinema that has no auditoriums (409 otherwise)",
    responses={204: None, 409: None},
    auth="admin",
    tags=("cinemas",),
)
async def delete_cinema(request: Request) -> Response:
    await auth.require(request, "admin")
    async with runtime(request).pool.acquire() as conn:
        try:
            deleted = await conn.fetchval(DELETE_CINEMA, path_int(request, "id"))
        except asyncpg.ForeignKeyViolationError:
            raise InUse("This cinema still has auditoriums; delete them first.") from None
    if deleted is None:
        raise NotFound("No such cinema.")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/cinemas", list_cinemas, methods=["GET"]),
    Route("/cinemas/{id:int}", get_cinema, methods=["GET"]),
    Route("/admin/cinemas", create_cinema, methods=["POST"]),
    Route("/admin/cinemas/{id:int}", replace_cinema, methods=["PUT"]),
    Route("/admin/cinemas/{id:int}", patch_cinema, methods=["PATCH"]),
    Route("/admin/cinemas/{id:int}", delete_cinema, methods=["DELETE"]),
]
