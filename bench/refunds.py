"""Refunds completed per second: a screening with N paid orders is cancelled, workers refund them.

    .venv/bin/python -m bench.refunds                       # embedded PostgreSQL and Redis
    .venv/bin/python -m bench.refunds --orders 2000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --redis-url redis://127.0.0.1:6379/0

For each combination of worker processes (`--workers`, default 1 and 2) and simulated gateway
latency per call (`--latency`, default 0 and 50 ms), one run:

1. a fresh screening with `--orders` paid orders (one seat each), written the way checkout
   writes them, with the simulated gateway's own record of each payment;
2. the worker processes (`python -m seatmap worker`, as the Procfile runs them) are started and
   idle; the real web process (uvicorn, `seatmap.app:app_from_environ`) serves the admin;
3. `POST /api/admin/screenings/{id}/cancel`: one transaction queues a refund job per order
   (and a notification per buyer); the clock starts at that transaction (`cancelled_at`);
4. the run ends when every refund has succeeded; refunds/s = orders / (last `completed_at` -
   `cancelled_at`). `all jobs` is when the notifications (two per buyer: the cancellation,
   then the refund) were sent too. CPU is the workers' (utime + stime from /proc).

Checked after every run: the gateway's ledger holds exactly one refund per order, of its amount.
Run by hand, never by the test suite; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import asyncpg
import httpx

from bench.servers import REPO, Backing, Kind, cpu_seconds, running, stop
from bench.stage import hall, new_database
from seatmap.accounts.auth import issue_access_token
from seatmap.embedded import Urls, embedded_servers
from seatmap.settings import Secret, Settings

# What checkout writes for a paid web order, and the simulated gateway's record of its payment.
PAID_ORDERS: Final = """
WITH d AS (
    SELECT * FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS d (user_id, seat, n)
), o AS (
    INSERT INTO orders (user_id, screening_id, hold_token, status, currency, total, expires_at, paid_at,
                        seats_published)
    SELECT d.user_id, $1, $1::bigint::text || '.bench' || d.n, 'paid', 'IDR', 50000 + d.n, now(), now(), true
    FROM d ORDER BY d.n
    RETURNING id, hold_token, total
), od AS (
    SELECT o.id, o.total, d.seat FROM o JOIN d ON o.hold_token = $1::bigint::text || '.bench' || d.n
), l AS (
    INSERT INTO order_lines (order_id, position, seat_label, category, price)
    SELECT id, 0, seat, 'standard', total FROM od
), g AS (
    INSERT INTO simulated_payments (id, reference, amount, currency, status, webhook_url, return_url,
                                    expires_at, decided_at)
    SELECT 'sim_bench_' || id, id::text, total, 'IDR', 'paid', 'http://127.0.0.1/none', 'http://127.0.0.1/none',
           now() + interval '1 hour', now()
    FROM od
), p AS (
    INSERT INTO payments (order_id, provider, provider_ref, amount, currency, status)
    SELECT id, 'simulated', 'sim_bench_' || id, total, 'IDR', 'paid' FROM od
)
INSERT INTO tickets (code, order_id, screening_id, seat_label, category, price)
SELECT md5(random()::text || id), id, $1, seat, 'standard', total FROM od
"""
LEDGER_CHECK: Final = """
SELECT count(*) FILTER (WHERE refunds <> 1 OR refunded <> amount) AS wrong, count(*) AS payments
FROM (SELECT sp.amount, count(sr.id) AS refunds, coalesce(sum(sr.amount), 0) AS refunded
      FROM simulated_payments sp JOIN orders o ON o.id = sp.reference::bigint
      LEFT JOIN simulated_refunds sr ON sr.payment_id = sp.id
      WHERE o.screening_id = $1 GROUP BY sp.id, sp.amount) x
"""


@dataclass(frozen=True)
class Stage:
    admin_url: str
    database: str
    database_url: str
    redis_url: str
    prefix: str
    jwt_secret: str
    hall: int
    movie: int
    customers: list[int]
    seats: list[str]
    admin_token: str


@dataclass(frozen=True)
class Result:
    workers: int
    latency_ms: float
    orders: int
    seconds: float
    all_jobs_seconds: float
    worker_cpu: float
    postgres_cpu: float
    wrong: int

    @property
    def rate(self) -> float:
        return self.orders / self.seconds


async def build(urls: Urls, orders: int) -> Stage:
    database, database_url = await new_database(urls.database_url)
    jwt_secret = secrets.token_urlsafe(48)
    width = 50
    rows = ["S" * width] * -(-orders // width)
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            auditorium, movie = await hall(conn, rows, "Big hall")
            customers = await conn.fetch(
                "INSERT INTO users (email, name, password_hash, role, email_verified_at)"
                " SELECT 'refund' || g || '@example.com', 'Buyer ' || g, 'x', 'customer', now()"
                " FROM generate_series(1, $1) g RETURNING id",
                orders,
            )
            admin_id = await conn.fetchval(
                "INSERT INTO users (email, name, password_hash, role, email_verified_at)"
                " VALUES ('admin@example.com', 'Admin', 'x', 'admin', now()) RETURNING id"
            )
    finally:
        await conn.close()
    settings = Settings(
        database_url=database_url,
        redis_url=urls.redis_url,
        data_dir=Path("."),
        dev=True,
        jwt_secret=Secret(jwt_secret),
        access_token_ttl=24 * 3600,
    )
    return Stage(
        admin_url=urls.database_url,
        database=database,
        database_url=database_url,
        redis_url=urls.redis_url,
        prefix=f"bench{uuid.uuid4().hex[:8]}",
        jwt_secret=jwt_secret,
        hall=auditorium.id,
        movie=movie,
        customers=[int(r["id"]) for r in customers],
        seats=[seat.label for seat in auditorium.layout.seats][:orders],
        admin_token=issue_access_token(settings, admin_id, "admin")[0],
    )


async def sold_screening(stage: Stage, index: int) -> int:
    """A new screening (3 hours after the previous one) with every seat sold, one per order."""
    conn = await asyncpg.connect(stage.database_url)
    try:
        async with conn.transaction():
            starts = datetime.now(UTC) + timedelta(days=2, hours=3 * index)
            screening: int = await conn.fetchval(
                "INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                stage.hall, stage.movie, starts, starts + timedelta(hours=2),
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO screening_prices (screening_id, category, amount)"
                " VALUES ($1, 'standard', 50000)",
                screening,
            )
            await conn.execute(PAID_ORDERS, screening, stage.customers, stage.seats)
    finally:
        await conn.close()
    return screening


def _worker_env(stage: Stage, latency: float, concurrency: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEATMAP_")}
    return env | {
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": stage.database_url,
        "REDIS_URL": stage.redis_url,
        "SEATMAP_REDIS_PREFIX": stage.prefix,
        "SEATMAP_JWT_SECRET": stage.jwt_secret,
        "SEATMAP_LOG_LEVEL": "WARNING",
        "SEATMAP_LOG_JSON": "0",
        "SEATMAP_SIMULATED_LATENCY": str(latency),
        "SEATMAP_JOB_CONCURRENCY": str(concurrency),
    }


@contextlib.asynccontextmanager
async def workers(
    stage: Stage, n: int, latency: float, concurrency: int, logs: Path, profile: Path | None = None
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    spies: list[asyncio.subprocess.Process] = []
    env = _worker_env(stage, latency, concurrency) | {"SEATMAP_LOG_LEVEL": "INFO"}
    try:
        for i in range(n):
            log = logs / f"worker-{latency}-{n}-{i}.log"
            with log.open("wb") as out:
                started.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "seatmap", "worker", env=env, cwd=REPO, stdout=out, stderr=out
                    )
                )
            deadline = time.monotonic() + 30
            while "worker running jobs" not in log.read_text(errors="replace"):
                if started[-1].returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')[-2000:]}")
                await asyncio.sleep(0.05)
            if profile is not None:
                spy = str(Path(sys.executable).parent / "py-spy")
                raw = profile / f"worker-{latency * 1000:.0f}ms-{n}-{i}.txt"
                record = f"record --format raw --rate 200 --pid {started[-1].pid} -o {raw}".split()
                quiet = asyncio.subprocess.DEVNULL
                spies.append(await asyncio.create_subprocess_exec(spy, *record, stdout=quiet, stderr=quiet))
        yield started
    finally:
        for spy_process in spies:
            spy_process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            await spy_process.wait()
        await stop(*started)


async def one_run(
    stage: Stage,
    web: httpx.AsyncClient,
    index: int,
    n_workers: int,
    latency: float,
    args: argparse.Namespace,
    logs: Path,
) -> Result:
    screening = await sold_screening(stage, index)
    orders = len(stage.seats)
    db = await asyncpg.connect(stage.database_url)
    try:
        async with workers(stage, n_workers, latency, args.concurrency, logs, args.profile) as procs:
            cpu_before = sum(cpu_seconds(p.pid) for p in procs)
            poller: int = await db.fetchval("SELECT pg_backend_pid()")
            pg_before = backends_cpu(stage.database) - cpu_seconds(poller)
            r = await web.post(
                f"/api/admin/screenings/{screening}/cancel",
                json={"reason": "bench"},
                headers={"Authorization": f"Bearer {stage.admin_token}"},
            )
            r.raise_for_status()
            assert r.json()["refunds_queued"] == orders, r.text
            # Cheap polls (partial indexes): the bench's own queries should not cost the database
            # much, and its backend's CPU is left out of the figure anyway.
            await _poll(db, lambda n: n == 0, "SELECT count(*) FROM refunds WHERE status = 'pending'")
            await _poll(
                db, lambda n: n == 0, "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
            )
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
            pg_cpu = backends_cpu(stage.database) - cpu_seconds(poller) - pg_before
        row = await db.fetchrow(
            "SELECT EXTRACT(EPOCH FROM max(r.completed_at) - s.cancelled_at)::float8 AS refunds,"
            " EXTRACT(EPOCH FROM (SELECT max(finished_at) FROM jobs) - s.cancelled_at)::float8 AS jobs"
            " FROM screenings s JOIN orders o ON o.screening_id = s.id JOIN refunds r ON r.order_id = o.id"
            " WHERE s.id = $1 GROUP BY s.cancelled_at",
            screening,
        )
        check = await db.fetchrow(LEDGER_CHECK, screening)
    finally:
        await db.close()
    assert row is not None and check is not None
    assert check["payments"] == orders
    return Result(n_workers, latency * 1000, orders, row["refunds"], row["jobs"], cpu, pg_cpu, check["wrong"])


def backends_cpu(database: str) -> float:
    """CPU seconds so far of the PostgreSQL backends serving `database` (their titles name it)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if title.startswith("postgres: ") and f" {database} " in title:
                total += cpu_seconds(int(proc.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


async def _poll(db: asyncpg.Connection, done: Callable[[int], bool], sql: str, *args: object) -> None:
    async with asyncio.timeout(600):
        while not done(await db.fetchval(sql, *args)):  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.1)


async def teardown(stage: Stage) -> None:
    admin = await asyncpg.connect(stage.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{stage.database}" WITH (FORCE)')
    finally:
        await admin.close()
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(stage.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{stage.prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def report(results: list[Result], concurrency: int) -> str:
    lines = [
        f"Refunds of a cancelled screening, {results[0].orders} paid orders, "
        f"{concurrency} jobs at once per worker",
        "",
        f"{'workers':>7} {'latency':>8} {'refunds/s':>10} {'seconds':>8} {'all jobs s':>10} "
        f"{'worker CPU s':>12} {'PG CPU s':>9} {'ms CPU/refund':>13} {'ledger':>8}",
    ]
    for r in results:
        ledger = "ok" if r.wrong == 0 else f"{r.wrong} BAD"
        lines.append(
            f"{r.workers:>7} {r.latency_ms:>6.0f}ms {r.rate:>10.0f} {r.seconds:>8.2f} "
            f"{r.all_jobs_seconds:>10.2f} {r.worker_cpu:>12.2f} {r.postgres_cpu:>9.2f} "
            f"{1000 * (r.worker_cpu + r.postgres_cpu) / r.orders:>13.2f} {ledger:>8}"
        )
    lines += [
        "",
        "refunds/s: orders / (last refund completed - cancellation committed); all jobs: until the",
        "notifications (two per buyer) were sent too; worker CPU (the worker processes) and PG CPU (the",
        "database backends serving the bench database) cover refunds and notifications, from the",
        "cancellation until every job was done; ms CPU/refund is both together per order.",
        "ledger: the simulated gateway's own record holds exactly one refund of the right amount per order.",
    ]
    return "\n".join(lines)


async def run(urls: Urls, args: argparse.Namespace, tmp: Path) -> list[Result]:
    stage = await build(urls, args.orders)
    results: list[Result] = []
    try:
        backing = Backing(stage.database_url, stage.redis_url, stage.prefix, stage.jwt_secret, "-")
        async with (
            running(Kind("seatmap", "websockets-sansio"), backing, tmp) as web,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=60) as client,
        ):
            index = 0
            for latency in args.latency:
                for n in args.workers:
                    for _ in range(args.rounds):
                        result = await one_run(stage, client, index, n, latency, args, tmp)
                        index += 1
                        print(
                            f"  {n} worker(s), {latency * 1000:.0f} ms: {result.rate:.0f} refunds/s",
                            file=sys.stderr,
                        )
                        results.append(result)
    finally:
        await teardown(stage)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.refunds", description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=2000, help="paid orders in the cancelled screening")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes to compare")
    p.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05], help="gateway seconds per call")
    p.add_argument("--concurrency", type=int, default=32, help="SEATMAP_JOB_CONCURRENCY of each worker")
    p.add_argument("--rounds", type=int, default=1, help="runs of each combination")
    p.add_argument(
        "--profile", type=Path, help="record each worker with py-spy (raw stacks) into this directory"
    )
    p.add_argument("--database-url", help="PostgreSQL to create the bench database in (default: embedded)")
    p.add_argument("--redis-url", help="Redis to use (default: embedded)")
    args = p.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-refunds-") as tmp,
        embedded_servers(Path(tmp) / "data", args.database_url, args.redis_url) as urls,
    ):
        results = asyncio.run(run(urls, args, Path(tmp)))
    print(report(results, args.concurrency))


if __name__ == "__main__":
    main()
