"""Movies, and events (concerts, shows) that are sold the same way: what a screening shows.

Reads are public; writes need the admin role. A movie's duration gives a new screening its
default end (duration plus cleaning time), so it is required and positive.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

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
from seatmap.errors import InUse, NotFound
from seatmap.runtime import runtime

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Kind = Literal["movie", "event"]
Minutes = Annotated[int, msgspec.Meta(ge=1, le=24 * 60)]
Rating = Annotated[str, msgspec.Meta(max_length=16, examples=["SU", "13+", "17+"])]
Description = Annotated[str, msgspec.Meta(max_length=5000)]


class MovieIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new movie or event. `rating` is free text (the Indonesian LSF classes: SU, 13+, 17+, 21+)."""

    title: Title
    duration_minutes: Minutes
    kind: Kind = "movie"
    rating: Rating = ""
    description: Description = ""


class MoviePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields to change. A new duration does not move existing screenings."""

    title: Title | UnsetType = UNSET
    duration_minutes: Minutes | UnsetType = UNSET
    kind: Kind | UnsetType = UNSET
    rating: Rating | UnsetType = UNSET
    description: Description | UnsetType = UNSET


class Movie(msgspec.Struct, kw_only=True):
    id: int
    title: str
    kind: str
    duration_minutes: int
    rating: str
    description: str


class MoviePage(Page):
    items: list[Movie]


LIST_MOVIES: Final = """
SELECT id, title, kind, duration_minutes, rating, description FROM movies
WHERE ($1::text IS NULL OR title ILIKE '%' || $1 || '%') AND id > $2
ORDER BY id LIMIT $3
"""
GET_MOVIE: Final = "SELECT id, title, kind, duration_minutes, rating, description FROM movies WHERE id = $1"
INSERT_MOVIE: Final = """
INSERT INTO movies (title, kind, duration_minutes, rating, description) VALUES ($1, $2, $3, $4, $5)
RETURNING id, title, kind, duration_minutes, rating, description
"""
UPDATE_MOVIE: Final = """
UPDATE movies SET title = coalesce($2, title), kind = coalesce($3, kind),
                  duration_minutes = coalesce($4, duration_minutes), rating = coalesce($5, rating),
                  description = coalesce($6, description)
WHERE id = $1 RETURNING id, title, kind, duration_minutes, rating, description
"""
DELETE_MOVIE: Final = "DELETE FROM movies WHERE id = $1 RETURNING id"


def movie(row: asyncpg.Record) -> Movie:
    return Movie(
        id=row["id"],
        title=row["title"],
        kind=row["kind"],
        duration_minutes=row["duration_minutes"],
        rating=row["rating"],
        description=row["description"],
    )


def _like(text: str) -> str:
    """The search text taken literally: `%` and `_` in a title are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@documented(
    "List movies and events; `q` searches titles",
    query=("q", "cursor", int_param("limit", 1, 100)),
    responses={200: MoviePage},
    tags=("movies",),
)
async def list_movies(request: Request) -> Response:
    limit = query_int(request, "limit", 20, minimum=1, maximum=100)
    q = request.query_params.get("q", "").strip()
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST_MOVIES, _like(q) if q else None, cursor_id(request), limit + 1)
    items = [movie(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(MoviePage(items=items, next_cursor=next_cursor))


@documented("One movie or event", responses={200: Movie}, tags=("movies",))
async def get_movie(request: Request) -> Response:
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(GET_MOVIE, path_int(request, "id"))
    if row is None:
        raise NotFound("No such movie.")
    return respond(movie(row))


@documented("Create a movie or event", body=MovieIn, responses={201: Movie}, auth="admin", tags=("movies",))
async def create_movie(request: Request) -> Response:
    await auth.require(request, "admin")
    body = await read_body(request, MovieIn)
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            INSERT_MOVIE, body.title, body.kind, body.duration_minutes, body.rating, body.description
        )
    assert row is not None
    return respond(movie(row), 201)


@documented(
    "Change some fields of a movie or event",
    body=MoviePatch,
    responses={200: Movie},
    auth="admin",
    tags=("movies",),
)
async def patch_movie(request: Request) -> Response:
    await auth.require(request, "admin")
    body = await read_body(request, MoviePatch)
    fields = (body.title, body.kind, body.duration_minutes, body.rating, body.description)
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            UPDATE_MOVIE, path_int(request, "id"), *(None if value is UNSET else value for value in fields)
        )
    if row is None:
        raise NotFound("No such movie.")
    return respond(movie(row))


@documented(
    "Delete a movie or event without screenings (409 otherwise)",
    responses={204: None, 409: None},
    auth="admin",
    tags=("movies",),
)
async def delete_movie(request: Request) -> Response:
    await auth.require(request, "admin")
    async with runtime(request).pool.acquire() as conn:
        try:
            deleted = await conn.fetchval(DELETE_MOVIE, path_int(request, "id"))
        except asyncpg.ForeignKeyViolationError:
            raise InUse("Screenings show this movie; delete them first.") from None
    if deleted is None:
        raise NotFound("No such movie.")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/movies", list_movies, methods=["GET"]),
    Route("/movies/{id:int}", get_movie, methods=["GET"]),
    Route("/admin/movies", create_movie, methods=["POST"]),
    Route("/admin/movies/{id:int}", patch_movie, methods=["PATCH"]),
    Route("/admin/movies/{id:int}", delete_movie, methods=["DELETE"]),
]
