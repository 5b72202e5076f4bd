"""How fast the back office answers over 10,000 orders: reports, bookings, the door list, CSV.

    .venv/bin/python -m bench.reports                       # embedded PostgreSQL and Redis
    .venv/bin/python -m bench.reports --orders 10000 --requests 50 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --redis-url redis://127.0.0.1:6379/0

1. A fresh database with one hall of 600 seats and `--screenings` screenings of it, one a day
   from 10 days ago on (so the default report range covers them all, and the ones still to come
   have a live state in Redis to read `held` from), and `--orders` paid orders spread over them,
   one ticket each, a fifth sold at the box office, one in twenty refunded (void ticket, refund
   row), written the way checkout writes them;
2. the real web process (`uvicorn seatmap.app:app_from_environ`) on it;
3. each endpoint is called `--requests` times one after another, after one warm-up call, as an
   admin: p50, p99 and max of the wall-clock time of the whole answer (body read), client side.

The issue's target: a report over 10,000 orders answers in under a second. Run by hand, never
by the test suite; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import asyncpg
import httpx

from bench.servers import Backing, Kind, running
from bench.stage import hall, new_database
from seatmap.accounts.auth import issue_access_token
from seatmap.embedded import Urls, embedded_servers
from seatmap.settings import Secret, Settings

SEED: Final = """
WITH d AS (
    SELECT * FROM unnest($2::bigint[], $3::text[], $4::text[])
        WITH ORDINALITY AS d (user_id, seat, channel, n)
), o AS (
    INSERT INTO orders (user_id, screening_id, channel, sold_by, hold_token, status, currency, total,
                        expires_at, created_at, paid_at, seats_published)
    SELECT CASE WHEN d.channel = 'web' THEN d.user_id END, $1, d.channel,
           CASE WHEN d.channel = 'boxoffice' THEN $5::bigint END, $1::bigint::text || '.b' || d.n,
           'paid', 'IDR', 50000, now(), now() - d.n * interval '1 minute',
           now() - d.n * interval '1 minute', true
    FROM d ORDER BY d.n
    RETURNING id, hold_token
), od AS (
    SELECT o.id, d.* FROM o JOIN d ON o.hold_token = $1::bigint::text || '.b' || d.n
), l AS (
    INSERT INTO order_lines (order_id, position, seat_label, category, price, holder_name)
    SELECT id, 0, seat, 'standard', 50000, 'Holder ' || id FROM od
), p AS (
    INSERT INTO payments (order_id, provider, provider_ref, amount, currency, status)
    SELECT id, CASE channel WHEN 'web' THEN 'simulated' ELSE 'cash' END, 'bench-' || id, 50000, 'IDR', 'paid'
    FROM od
)
INSERT INTO tickets (code, order_id, screening_id, seat_label, category, price, holder_name)
SELECT md5(random()::text || id), id, $1, seat, 'standard', 50000, 'Holder ' || id FROM od
"""
REFUND_SOME: Final = """
WITH o AS (
    UPDATE orders SET status = 'refunded', closed_at = now() WHERE id % 20 = 0 RETURNING id
), t AS (
    UPDATE tickets SET status = 'void', voided_at = now() FROM o WHERE tickets.order_id = o.id
)
INSERT INTO refunds (order_id, payment_id, amount, currency, reason, closes_order, status, completed_at)
SELECT p.order_id, p.id, p.amount, p.currency, 'customer', true, 'succeeded', now()
FROM payments p JOIN o ON o.id = p.order_id
"""


@dataclass(frozen=True)
class Stage:
    admin_url: str
    database: str
    database_url: str
    redis_url: str
    prefix: str
    jwt_secret: str
    screenings: list[int]
    admin_token: str


async def build(urls: Urls, orders: int, screenings: int) -> Stage:
    database, database_url = await new_database(urls.database_url)
    jwt_secret = secrets.token_urlsafe(48)
    per = -(-orders // screenings)
    assert per <= 600, "at most 600 orders per screening (one hall of 600 seats)"
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            auditorium, movie = await hall(conn, ["S" * 30] * 20, "Big hall")
            labels = [seat.label for seat in auditorium.layout.seats]
            users = [
                r["id"]
                for r in await conn.fetch(
                    "INSERT INTO users (email, name, password_hash, role, email_verified_at)"
                    " SELECT 'buyer' || g || '@example.com', 'Buyer ' || g, 'x', 'customer', now()"
                    " FROM generate_series(1, $1) g RETURNING id",
                    per,
                )
            ]
            admin = await conn.fetchval(
                "INSERT INTO users (email, name, password_hash, role, email_verified_at)"
                " VALUES ('admin@example.com', 'Admin', 'x', 'admin', now()) RETURNING id"
            )
            first = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=10)
            ids: list[int] = []
            left = orders
            for i in range(screenings):
                starts = first + timedelta(days=i)
                screening = await conn.fetchval(
                    "INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at)"
                    " VALUES ($1, $2, $3, $4) RETURNING id",
                    auditorium.id, movie, starts, starts + timedelta(hours=2),
                )  # fmt: skip
                await conn.execute(
                    "INSERT INTO screening_prices (screening_id, category, amount)"
                    " VALUES ($1, 'standard', 50000)",
                    screening,
                )
                n = min(per, left)
                left -= n
                channels = ["boxoffice" if k % 5 == 0 else "web" for k in range(n)]
                await conn.execute(SEED, screening, users[:n], labels[:n], channels, admin)
                ids.append(screening)
            await conn.execute(REFUND_SOME)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    settings = Settings(
        database_url=database_url, redis_url=urls.redis_url, data_dir=Path("."), dev=True,
        jwt_secret=Secret(jwt_secret), access_token_ttl=24 * 3600,
    )  # fmt: skip
    return Stage(
        admin_url=urls.database_url, database=database, database_url=database_url, redis_url=urls.redis_url,
        prefix=f"bench{uuid.uuid4().hex[:8]}", jwt_secret=jwt_secret, screenings=ids,
        admin_token=issue_access_token(settings, admin, "admin")[0],
    )  # fmt: skip


async def teardown(stage: Stage) -> None:
    """Drop the bench database and this run's Redis keys."""
    import redis.asyncio as aioredis

    admin = await asyncpg.connect(stage.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{stage.database}" WITH (FORCE)')
    finally:
        await admin.close()
    redis = aioredis.Redis.from_url(stage.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{stage.prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def timed(client: httpx.AsyncClient, url: str, accept: str, requests: int) -> tuple[list[float], int]:
    """Seconds per answer over `requests` calls after one warm-up; and the body size."""
    headers = {"Accept": accept}
    warm = await client.get(url, headers=headers)
    assert warm.status_code == 200, (url, warm.status_code, warm.text[:300])
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        r = await client.get(url, headers=headers)
        times.append(time.perf_counter() - start)
        assert r.status_code == 200
    return times, len(warm.content)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(urls: Urls, args: argparse.Namespace, tmp: Path) -> str:
    stage = await build(urls, args.orders, args.screenings)
    try:
        backing = Backing(stage.database_url, stage.redis_url, stage.prefix, stage.jwt_secret, "-")
        busiest = stage.screenings[0]
        future = stage.screenings[-1]
        cases = [
            ("report, by day, all screenings", "/api/admin/reports?group=day", "application/json"),
            ("report, by cinema", "/api/admin/reports?group=cinema", "application/json"),
            ("report, by film, CSV", "/api/admin/reports?group=movie", "text/csv"),
            ("report, one screening", f"/api/admin/reports/screenings/{busiest}", "application/json"),
            ("report, one screening to come", f"/api/admin/reports/screenings/{future}", "application/json"),
            (
                "seat history, one screening",
                f"/api/admin/reports/screenings/{busiest}/seats",
                "application/json",
            ),
            ("bookings, first page", "/api/admin/orders", "application/json"),
            ("bookings of one screening", f"/api/admin/orders?screening_id={busiest}", "application/json"),
            ("bookings, q=holder name", "/api/admin/orders?q=Holder%20777", "application/json"),
            ("bookings, status=refunded", "/api/admin/orders?status=refunded", "application/json"),
            ("bookings, all as CSV", "/api/admin/orders", "text/csv"),
            ("door list, one screening", f"/api/admin/screenings/{busiest}/attendees", "application/json"),
            ("door list, CSV", f"/api/admin/screenings/{busiest}/attendees", "text/csv"),
        ]
        lines = [
            f"Back office over {args.orders} orders in {args.screenings} screenings, "
            f"{args.requests} sequential requests each (after one warm-up)",
            "",
            f"{'endpoint':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'KB':>8}",
        ]
        async with (
            running(Kind("seatmap", "websockets-sansio"), backing, tmp) as web,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{web.port}", timeout=60,
                headers={"Authorization": f"Bearer {stage.admin_token}"},
            ) as client,
        ):  # fmt: skip
            for name, url, accept in cases:
                requests = max(3, args.requests // 5) if "all as CSV" in name else args.requests
                times, size = await timed(client, url, accept, requests)
                lines.append(
                    f"{name:<34} {1000 * statistics.median(times):>8.1f} {1000 * quantile(times, 0.99):>8.1f}"
                    f" {1000 * max(times):>8.1f} {size / 1024:>8.1f}"
                )
                print(f"  {name}: {1000 * statistics.median(times):.1f} ms", file=sys.stderr)
    finally:
        await teardown(stage)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=10_000, help="paid orders, one ticket each")
    p.add_argument("--screenings", type=int, default=20, help="screenings they are spread over (≤ 600 each)")
    p.add_argument("--requests", type=int, default=50, help="timed calls per endpoint")
    p.add_argument("--database-url", help="PostgreSQL to create the bench database in (default: embedded)")
    p.add_argument("--redis-url", help="Redis to use (default: embedded)")
    args = p.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp,
        embedded_servers(Path(tmp) / "data", args.database_url, args.redis_url) as urls,
    ):
        print(asyncio.run(run(urls, args, Path(tmp))))


if __name__ == "__main__":
    main()
