"""Blocked seats: an admin takes seats of one screening out of sale (broken seat, camera, house seats).

PostgreSQL keeps the blocks (the live map is rebuilt from them); the block script marks them in
Redis and tells every viewer. Both happen or neither: the rows are written in a transaction that
commits only after the script accepted the seats, and a seat that is held or sold is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.accounts.auth import Principal
from seatmap.api import documented, path_int, read_body, respond
from seatmap.errors import InvalidInput, SeatTaken, UnknownSeats
from seatmap.live.protocol import SeatLabel
from seatmap.runtime import runtime


class BlockRequest(msgspec.Struct, forbid_unknown_fields=True):
    seats: Annotated[list[SeatLabel], msgspec.Meta(min_length=1, max_length=1000)]
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class UnblockRequest(msgspec.Struct, forbid_unknown_fields=True):
    seats: Annotated[list[SeatLabel], msgspec.Meta(min_length=1, max_length=1000)]


class Block(msgspec.Struct):
    seat: str
    reason: str
    created_at: datetime
    created_by: int | None


class BlockList(msgspec.Struct):
    items: list[Block]


_LIST: Final = """
SELECT seat_label, reason, created_at, created_by FROM seat_blocks
WHERE screening_id = $1 ORDER BY seat_label
"""
_INSERT: Final = """
INSERT INTO seat_blocks (screening_id, seat_label, reason, created_by)
SELECT $1, label, $3, $4 FROM unnest($2::text[]) AS label
ON CONFLICT (screening_id, seat_label) DO NOTHING
RETURNING seat_label
"""
_DELETE: Final = (
    "DELETE FROM seat_blocks WHERE screening_id = $1 AND seat_label = ANY($2::text[]) RETURNING seat_label"
)


async def _scoped(request: Request) -> Principal:
    """An admin, or the organizer of the screening's cinema."""
    who = await scope.require_scoped(request)
    async with runtime(request).pool.acquire() as conn:
        return await scope.check_screening(conn, who, path_int(request, "id"))


async def _checked(request: Request, seats: list[str]) -> int:
    screening = path_int(request, "id")
    layout = await runtime(request).holds.inventory.layout(screening)
    if len(set(seats)) != len(seats):
        raise InvalidInput("A seat is listed twice.", path="$.seats")
    unknown = [s for s in seats if s not in layout.labels]
    if unknown:
        raise UnknownSeats(f"No such seats in this auditorium: {', '.join(unknown)}.", seats=unknown)
    return screening


@documented("List blocked seats", responses={200: BlockList}, auth="staff", scope="cinema", tags=("seating",))
async def list_blocks(request: Request) -> Response:
    who = await scope.require_scoped(request, "staff")
    rt = runtime(request)
    screening = path_int(request, "id")
    async with rt.pool.acquire() as conn:
        await scope.check_screening(conn, who, screening)
    await rt.holds.inventory.layout(screening)  # 404 for an unknown screening
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(_LIST, screening)
    return respond(
        BlockList([Block(r["seat_label"], r["reason"], r["created_at"], r["created_by"]) for r in rows])
    )


@documented(
    "Block seats",
    body=BlockRequest,
    responses={201: BlockList},
    auth="admin",
    scope="cinema",
    tags=("seating",),
)
async def block_seats(request: Request) -> Response:
    """Refused with 409 (naming the seats) if any of them is held or sold; then nothing is blocked."""
    who = await _scoped(request)
    body = await read_body(request, BlockRequest)
    screening = await _checked(request, body.seats)
    rt = runtime(request)
    inventory = rt.holds.inventory
    async with rt.pool.acquire() as conn:
        new: list[str] = []
        in_redis = False
        try:
            async with conn.transaction():
                new = [
                    r["seat_label"]
                    for r in await conn.fetch(_INSERT, screening, body.seats, body.reason, who.user_id)
                ]
                busy = await inventory.block(screening, body.seats)
                if busy:
                    raise SeatTaken(f"Held or sold seats can't be blocked: {', '.join(busy)}.", seats=busy)
                in_redis = True
        except BaseException:
            if in_redis and new:
                # The commit failed after Redis accepted: take back what this request blocked.
                await inventory.unblock(screening, new)
            raise
        rows = await conn.fetch(_LIST, screening)
    return respond(
        BlockList([Block(r["seat_label"], r["reason"], r["created_at"], r["created_by"]) for r in rows]), 201
    )


@documented(
    "Unblock seats",
    body=UnblockRequest,
    responses={200: BlockList},
    auth="admin",
    scope="cinema",
    tags=("seating",),
)
async def unblock_seats(request: Request) -> Response:
    await _scoped(request)
    body = await read_body(request, UnblockRequest)
    screening = await _checked(request, body.seats)
    rt = runtime(request)
    async with rt.pool.acquire() as conn:
        async with conn.transaction():
            freed = [r["seat_label"] for r in await conn.fetch(_DELETE, screening, body.seats)]
            if freed:
                await rt.holds.inventory.unblock(screening, freed)
        rows = await conn.fetch(_LIST, screening)
    return respond(
        BlockList([Block(r["seat_label"], r["reason"], r["created_at"], r["created_by"]) for r in rows])
    )


routes: list[BaseRoute] = [
    Route("/admin/screenings/{id:int}/blocks", list_blocks, methods=["GET"]),
    Route("/admin/screenings/{id:int}/blocks", block_seats, methods=["POST"]),
    Route("/admin/screenings/{id:int}/unblock", unblock_seats, methods=["POST"]),
]
