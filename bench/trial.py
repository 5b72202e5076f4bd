"""One chaos run's stage: a fresh database on the run's own PostgreSQL, screenings, accounts, the
cluster of seatmap processes on it, and the viewers and buyers around it; then the verdict.

`Run` is what every scenario (bench/scenarios.py) is written against: it sets the stage up,
lets the scenario break things, and counts the invariants (bench/invariants.py) at the end,
reconnecting to PostgreSQL and Redis for each count since either may just have restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis

from bench import invariants
from bench.cluster import Backing, Cluster, environment
from bench.crowd import Buyer, Tally, Viewer
from bench.stage import customers, hall, new_database
from seatmap.accounts.auth import issue_access_token
from seatmap.settings import Secret, Settings

PAID_ORDERS: Final = """
WITH d AS (SELECT * FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS d (user_id, seat, n)),
o AS (
    INSERT INTO orders (user_id, screening_id, hold_token, status, currency, total, expires_at, paid_at,
                        seats_published)
    SELECT d.user_id, $1, $1::bigint::text || '.chaos' || d.n, 'paid', 'IDR', 50000 + d.n, now(), now(), true
    FROM d ORDER BY d.n RETURNING id, hold_token, total, user_id
), od AS (SELECT o.id, o.total, o.user_id, d.seat
         FROM o JOIN d ON o.hold_token = $1::bigint::text || '.chaos' || d.n),
l AS (INSERT INTO order_lines (order_id, position, seat_label, category, price)
      SELECT id, 0, seat, 'standard', total FROM od),
g AS (INSERT INTO simulated_payments (id, reference, amount, currency, status, webhook_url, return_url,
                                      expires_at, decided_at)
      SELECT 'sim_chaos_' || id, id::text, total, 'IDR', 'paid', 'http://127.0.0.1/none', 'http://127.0.0.1/none',
             now() + interval '1 hour', now() FROM od),
p AS (INSERT INTO payments (order_id, provider, provider_ref, amount, currency, status)
      SELECT id, 'simulated', 'sim_chaos_' || id, total, 'IDR', 'paid' FROM od),
t AS (INSERT INTO tickets (code, order_id, screening_id, seat_label, category, price)
      SELECT md5(random()::text || id), id, $1, seat, 'standard', total FROM od)
SELECT id, user_id FROM od ORDER BY id
"""


@dataclass
class Outcome:
    """One row of the chaos table."""

    scenario: str
    double_sold: int = 0
    paid_without_tickets: int = 0
    payments_adrift: int = 0
    refunds_not_once: int = 0
    diverged_viewers: int = 0
    seq_faults: int = 0
    server_errors: int = 0  # 5xx answers other than 503
    restock_p99_ms: float | None = None
    recovery_s: float | None = None  # crash (or outage end) to every payment confirmed/refunded
    timed: bool = True  # False: no fault to recover from (expiry, slow sockets), no window
    notes: dict[str, Any] = field(default_factory=dict)

    def violations(self) -> dict[str, int]:
        """The counts that must be 0."""
        return {
            "double_sold": self.double_sold,
            "paid_without_tickets": self.paid_without_tickets,
            "payments_adrift": self.payments_adrift,
            "refunds_not_once": self.refunds_not_once,
            "diverged_viewers": self.diverged_viewers,
            "seq_faults": self.seq_faults,
            "server_errors": self.server_errors,
        }


class Run:
    """A database with `screenings` screenings of `rows`, `users` accounts, and the cluster."""

    def __init__(
        self,
        servers: Backing,
        logs: Path,
        *,
        rows: list[str],
        screenings: int = 1,
        users: int = 10,
        webs: int = 2,
        workers: int = 1,
        seed: int = 13,
        env: dict[str, str] | None = None,
        latency: float = 0.0,
    ) -> None:
        self.servers = servers
        self.logs = logs
        self.rows, self.n_screenings, self.n_users = rows, screenings, users
        self.webs, self.workers, self.extra = webs, workers, env or {}
        self.latency = latency  # the balancer's (where the gateway's webhooks go)
        self.rng = random.Random(seed)
        self.prefix = f"chaos{uuid.uuid4().hex[:8]}"
        self.jwt_secret = secrets.token_urlsafe(48)
        self.tally = Tally()
        self.viewers: list[Viewer] = []
        self.buyers: list[Buyer] = []
        self.screenings: list[int] = []
        self.user_ids: list[int] = []
        self.tokens: list[str] = []
        self.labels: list[list[str]] = []  # seat labels, row by row
        self.database = ""
        self.database_url = ""
        self.cluster: Cluster | None = None

    async def __aenter__(self) -> Run:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database, self.database_url = await new_database(self.servers.postgres.url)
        conn = await asyncpg.connect(self.database_url)
        try:
            async with conn.transaction():
                auditorium, movie = await hall(conn, self.rows)
                first = datetime.now(UTC) + timedelta(days=1)
                for i in range(self.n_screenings):
                    starts = first + timedelta(hours=3 * i)
                    screening: int = await conn.fetchval(
                        "INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at)"
                        " VALUES ($1, $2, $3, $4) RETURNING id",
                        auditorium.id, movie, starts, starts + timedelta(hours=2),
                    )  # fmt: skip
                    await conn.execute(
                        "INSERT INTO screening_prices (screening_id, category, amount)"
                        " SELECT $1, c, 50000 FROM unnest(ARRAY['standard', 'premium', 'vip']) c",
                        screening,
                    )
                    self.screenings.append(screening)
                self.user_ids = await customers(conn, self.n_users, "chaos")
        finally:
            await conn.close()
        rows: dict[str, list[tuple[int, str]]] = {}
        for seat in auditorium.layout.seats:
            rows.setdefault(seat.row, []).append((seat.number, seat.label))
        self.labels = [[label for _, label in sorted(row)] for row in rows.values()]
        settings = Settings(
            database_url=self.database_url, redis_url=self.servers.redis.url, data_dir=Path("."),
            dev=True, jwt_secret=Secret(self.jwt_secret), access_token_ttl=24 * 3600,
        )  # fmt: skip
        self.tokens = [
            issue_access_token(settings, uid, "customer", email_verified=True)[0] for uid in self.user_ids
        ]
        env = environment(
            self.database_url, self.servers.redis.url, self.prefix, self.jwt_secret,
            SEATMAP_DATA_DIR=str(self.logs), **self.extra,
        )  # fmt: skip
        self.cluster = Cluster.plan(env, self.logs, self.webs, self.workers, self.latency)
        await self.cluster.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for viewer in self.viewers:
            await viewer.stop()
        for buyer in self.buyers:
            await buyer.close()
        if self.cluster is not None:
            await self.cluster.stop()
        with contextlib.suppress(Exception):
            if not self.servers.postgres.running():
                await self.servers.postgres.start()
            admin = await asyncpg.connect(self.servers.postgres.url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await admin.close()
        with contextlib.suppress(Exception):
            redis = self.redis()
            try:
                keys = [k async for k in redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
                for i in range(0, len(keys), 1000):
                    await redis.delete(*keys[i : i + 1000])
            finally:
                await redis.aclose()

    # -- the people --------------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        assert self.cluster is not None
        return [web.port for web in self.cluster.webs]

    def add_buyers(self, count: int, first: int = 0) -> list[Buyer]:
        made = [
            Buyer(token, self.ports, self.tally, self.rng) for token in self.tokens[first : first + count]
        ]
        self.buyers += made
        return made

    async def add_viewers(self, count: int, screenings: list[int] | None = None) -> list[Viewer]:
        """Viewers spread over the screenings and the web processes, each with its first snapshot."""
        screenings = screenings or self.screenings[:1]
        made = [
            Viewer(screenings[i % len(screenings)], self.ports, len(self.viewers) + i) for i in range(count)
        ]
        for viewer in made:
            viewer.start()
        self.viewers += made
        async with asyncio.timeout(60):
            while any(v.seq is None for v in made):  # noqa: ASYNC110 (callbacks set it)
                await asyncio.sleep(0.05)
        return made

    def pairs(self) -> list[list[str]]:
        """Seats 1-2, 3-4, … of every row: selling them never strands a single seat."""
        return [row[i : i + 2] for row in self.labels for i in range(0, len(row) - 1, 2)]

    async def paid_orders(self, screening: int, count: int) -> list[tuple[int, int]]:
        """`count` paid orders of one seat each, written as checkout writes them: (order, user)."""
        seats = [label for row in self.labels for label in row][:count]
        async with self.db() as db:
            rows = await db.fetch(PAID_ORDERS, screening, self.user_ids[:count], seats)
        return [(r["id"], r["user_id"]) for r in rows]

    # -- the backing, afresh each time (either may just have restarted) -----------------------

    @contextlib.asynccontextmanager
    async def db(self) -> Any:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = await asyncpg.connect(self.database_url, timeout=5)
                break
            except (OSError, asyncpg.PostgresError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        try:
            yield conn
        finally:
            await conn.close()

    async def until(self, sql: str, done: Callable[[Any], bool], within: float, *args: object) -> None:
        """Polls PostgreSQL (bounded) until `done(value of sql)`; TimeoutError when it never is."""
        async with self.db() as db, asyncio.timeout(within):
            while not done(await db.fetchval(sql, *args)):  # noqa: ASYNC110 (polling the database)
                await asyncio.sleep(0.05)

    def redis(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.servers.redis.url, decode_responses=True)

    # -- the verdict -------------------------------------------------------------------------

    async def verdict(self, scenario: str, since: float, within: float = 30.0) -> Outcome:
        """Waits (bounded) for the system to settle after the fault at `since`, then counts."""
        outcome = Outcome(scenario)
        async with self.db() as db:
            outcome.recovery_s = await invariants.settle(db, since, within)
            redis = self.redis()
            try:
                outcome.diverged_viewers = await invariants.diverged_viewers(
                    db, redis, self.prefix, self.viewers
                )
            finally:
                await redis.aclose()
            outcome.double_sold = await invariants.double_sold(db)
            outcome.paid_without_tickets = await invariants.paid_without_tickets(db)
            outcome.payments_adrift = await invariants.payments_adrift(db)
            outcome.refunds_not_once = await invariants.refunds_not_once(db)
        outcome.seq_faults = invariants.seq_faults(self.viewers)
        outcome.server_errors = self.tally.server_errors
        assert self.cluster is not None
        outcome.notes["paid"] = len(self.tally.paid)
        if self.viewers:
            outcome.notes["reconnects"] = sum(v.reconnects for v in self.viewers)
        dead = [
            w.name for w in self.cluster.workers if w.process is not None and not w.alive and not w.killed
        ]
        if dead:
            outcome.notes["workers_exited"] = ",".join(dead)
        return outcome
