"""The stage a run plays on: backing servers, a fresh database, screenings of 600 seats, users.

By default PostgreSQL and Redis are the embedded ones (`seatmap.embedded`) under a temporary
data directory, so a run disturbs nothing else on the machine; `--database-url` /
`--redis-url` use real servers instead. Either way the run gets its own database
(`bench_<hex>`, dropped at the end) and its own Redis key prefix (deleted at the end).
"""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from bench.servers import Backing
from seatmap.accounts.auth import issue_access_token
from seatmap.catalog.auditoriums import AuditoriumDetail, insert_auditorium
from seatmap.catalog.layouts import LayoutSpec, Seat
from seatmap.db import migrate
from seatmap.embedded import Urls
from seatmap.live.inventory import Keys
from seatmap.settings import Secret, Settings

ROWS: Final = ["S" * 30] * 20  # 600 seats: A1..A30 ... T1..T30


@dataclass(frozen=True)
class Stage:
    admin_url: str
    database: str
    database_url: str
    redis_url: str
    prefix: str
    jwt_secret: str
    screening: int  # the one all viewers watch and the driver changes
    hold_screenings: list[int]  # for the holds phase, apart from the viewers' screening
    users: list[int]
    tokens: list[str]  # an access token per user
    rows: list[list[str]]  # seat labels row by row, left to right

    @property
    def labels(self) -> list[str]:
        return [label for row in self.rows for label in row]

    def backing(self) -> Backing:
        channel = Keys.of(self.prefix, self.screening).channel
        return Backing(self.database_url, self.redis_url, self.prefix, self.jwt_secret, channel)


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def customers(conn: asyncpg.Connection, count: int, word: str) -> list[int]:
    """`count` customer accounts (<word>N@example.com), without paying for password hashes."""
    rows = await conn.fetch(
        "INSERT INTO users (email, name, password_hash, role, email_verified_at)"
        " SELECT $2::text || g || '@example.com', initcap($2::text) || ' ' || g, 'x', 'customer', now()"
        " FROM generate_series(1, $1) g RETURNING id",
        count, word,
    )  # fmt: skip
    return [int(r["id"]) for r in rows]


async def new_database(admin_url: str) -> tuple[str, str]:
    """A fresh, migrated `bench_<hex>` database: (name, URL). Every benchmark runs in its own."""
    database = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = _with_database(admin_url, database)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return database, url


async def hall(
    conn: asyncpg.Connection, rows: list[str], name: str = "Studio 1"
) -> tuple[AuditoriumDetail, int]:
    """A cinema with one auditorium of these compact rows and a film: (auditorium, movie id)."""
    cinema = await conn.fetchval(
        "INSERT INTO cinemas (name, city, timezone)"
        " VALUES ('Bench Cinema', 'Jakarta', 'Asia/Jakarta') RETURNING id"
    )
    auditorium = await insert_auditorium(conn, cinema, name, LayoutSpec(rows=rows))
    movie: int = await conn.fetchval(
        "INSERT INTO movies (title, duration_minutes) VALUES ('Bench film', 100) RETURNING id"
    )
    return auditorium, movie


async def build(urls: Urls, *, hold_screenings: int, users: int) -> Stage:
    database, database_url = await new_database(urls.database_url)
    jwt_secret = secrets.token_urlsafe(48)
    settings = Settings(
        database_url=database_url,
        redis_url=urls.redis_url,
        data_dir=Path("."),
        dev=True,
        jwt_secret=Secret(jwt_secret),
        access_token_ttl=24 * 3600,
    )
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            auditorium, movie = await hall(conn, ROWS)
            first = datetime.now(UTC) + timedelta(days=1)
            screenings: list[int] = []
            for i in range(1 + hold_screenings):
                starts = first + timedelta(hours=3 * i)
                screenings.append(
                    await conn.fetchval(
                        "INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at, status)"
                        " VALUES ($1, $2, $3, $4, 'scheduled') RETURNING id",
                        auditorium.id,
                        movie,
                        starts,
                        starts + timedelta(hours=2),
                    )
                )
            user_ids = await customers(conn, users, "bench")
    finally:
        await conn.close()
    return Stage(
        admin_url=urls.database_url,
        database=database,
        database_url=database_url,
        redis_url=urls.redis_url,
        prefix=f"bench{uuid.uuid4().hex[:8]}",
        jwt_secret=jwt_secret,
        screening=screenings[0],
        hold_screenings=screenings[1:],
        users=user_ids,
        tokens=[issue_access_token(settings, uid, "customer", email_verified=True)[0] for uid in user_ids],
        rows=_rows(auditorium.layout.seats),
    )


def _rows(seats: list[Seat]) -> list[list[str]]:
    rows: dict[str, list[Seat]] = {}
    for seat in seats:
        rows.setdefault(seat.row, []).append(seat)
    return [[s.label for s in sorted(row, key=lambda s: s.number)] for row in rows.values()]


def adjacent(rng: random.Random, rows: list[list[str]], count: int) -> list[str]:
    """`count` seats side by side in a random row, as people choose them."""
    row = rng.choice(rows)
    start = rng.randrange(len(row) - count + 1)
    return row[start : start + count]


async def seats_held(stage: Stage, screening: int) -> dict[str, str]:
    """The screening's seats hash in Redis: label -> "h:<token>" (held), "s", "b"."""
    redis = aioredis.Redis.from_url(stage.redis_url, decode_responses=True)
    try:
        held: dict[str, str] = await redis.hgetall(Keys.of(stage.prefix, screening).seats)  # type: ignore[assignment]
        return held
    finally:
        await redis.aclose()


async def tear_down(stage: Stage) -> None:
    redis = aioredis.Redis.from_url(stage.redis_url, decode_responses=True)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{stage.prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
    finally:
        await redis.aclose()
    admin = await asyncpg.connect(stage.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{stage.database}" WITH (FORCE)')
    finally:
        await admin.close()
