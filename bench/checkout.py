"""Checkout throughput: paid orders per second end to end, beside a bare asyncpg loop.

    python -m bench.checkout [--buyers 50] [--seconds 15] [--workers 2] [--profile]
                             [--database-url … --redis-url …]

End to end, each of `--buyers` concurrent buyers (its own user and keep-alive connection)
repeats, as a browser would: `POST /api/holds` (2 adjacent seats) -> `POST /api/orders`
(Idempotency-Key) -> `POST /api/orders/{id}/payments` -> `POST /pay/{id}/approve` on the
simulated gateway's page, whose signed webhook our server delivers to itself over HTTP and
verifies (the order becomes paid with its tickets, the seats sold in Redis) -> `GET
/api/orders/{id}` to see the two tickets. The server is `uvicorn seatmap.app:app_from_environ`
with `--workers` processes, as production runs it.

The baseline, in the same run, is a bare asyncpg loop with the same concurrency writing the
same rows per order in one transaction each (order, 2 lines, payment, webhook event, 2
tickets), i.e. the database work alone, with no HTTP, JSON, auth, Redis or gateway.

CPU is read from /proc for the server processes, this process (the load generator) and the
rest of the machine (PostgreSQL and Redis, mostly). `--profile` samples the server workers with
py-spy and prints where their time goes. Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import msgspec

from bench.servers import cpu_seconds, free_port, machine_busy_seconds
from bench.stage import customers, hall, new_database
from seatmap.accounts.auth import issue_access_token
from seatmap.embedded import Urls, embedded_servers
from seatmap.settings import Secret, Settings

ROWS: Final = ["S" * 40] * 25  # 1,000 seats per screening: 500 pairs
STEPS: Final = ("hold", "order", "pay", "approve", "tickets")


# ---- a lean HTTP/1.1 client, so the load generator leaves the CPU to the server ------------------


class Http:
    """One keep-alive connection; requests in sequence. Enough HTTP for our own server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                return await self._exchange(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError):
                self.writer.close()  # the server closed a kept-alive connection: reconnect once
                self.writer = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        payload = msgspec.json.encode(body) if body is not None else b""
        head = [
            f"{method} {path} HTTP/1.1",
            f"host: {self.host}:{self.port}",
            f"content-length: {len(payload)}",
        ]
        if body is not None:
            head.append("content-type: application/json")
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            name = name.lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and "close" in value.lower():
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            self.writer.close()
            self.writer = None
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()


# ---- the stage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    database_url: str
    admin_url: str
    database: str
    prefix: str
    jwt_secret: str
    users: list[int]
    tokens: list[str]
    web: list[int]  # screenings sold end to end
    bare: list[int]  # screenings the bare loop writes to
    labels: list[str]  # seat labels row by row


async def build(urls: Urls, buyers: int, web_screenings: int, bare_screenings: int) -> Stage:
    database, database_url = await new_database(urls.database_url)
    secret = secrets.token_urlsafe(48)
    settings = Settings(database_url=database_url, redis_url=urls.redis_url, data_dir=Path("."), dev=True,
                        jwt_secret=Secret(secret), access_token_ttl=24 * 3600)  # fmt: skip
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            auditorium, movie = await hall(conn, ROWS, "Hall 1")
            first = datetime.now(UTC) + timedelta(days=1)
            screenings: list[int] = []
            for i in range(web_screenings + bare_screenings):
                starts = first + timedelta(hours=3 * i)
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
                screenings.append(screening)
            users = await customers(conn, buyers, "buyer")
    finally:
        await conn.close()
    return Stage(
        database_url=database_url, admin_url=urls.database_url, database=database,
        prefix=f"bench{uuid.uuid4().hex[:8]}", jwt_secret=secret, users=users,
        tokens=[issue_access_token(settings, u, "customer", email_verified=True)[0] for u in users],
        web=screenings[:web_screenings], bare=screenings[web_screenings:],
        labels=[s.label for s in auditorium.layout.seats],
    )  # fmt: skip


def pairs(stage: Stage, screenings: list[int]) -> collections.deque[tuple[int, list[str]]]:
    """Adjacent pairs (1-2, 3-4, …): selling them never leaves a single seat stranded."""
    return collections.deque(
        (screening, stage.labels[i : i + 2])
        for screening in screenings
        for i in range(0, len(stage.labels), 2)
    )


async def teardown(stage: Stage, redis_url: str) -> None:
    import redis.asyncio as aioredis

    admin = await asyncpg.connect(stage.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{stage.database}" WITH (FORCE)')
    finally:
        await admin.close()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{stage.prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
    finally:
        await redis.aclose()


# ---- the server ----------------------------------------------------------------------------------


@contextlib.contextmanager
def server(
    stage: Stage, redis_url: str, workers: int, log: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ, "DATABASE_URL": stage.database_url, "REDIS_URL": redis_url,
        "SEATMAP_JWT_SECRET": stage.jwt_secret, "SEATMAP_REDIS_PREFIX": stage.prefix,
        "SEATMAP_PUBLIC_URL": f"http://127.0.0.1:{port}", "SEATMAP_LOG_LEVEL": "WARNING",
        # Every simulated buyer comes from 127.0.0.1: the per-address cap would refuse them.
        "SEATMAP_HOLD_SEATS_PER_ADDRESS": "0", "SEATMAP_WS_MAX_PER_ADDRESS": "0",
    }  # fmt: skip
    command = [
        sys.executable, "-m", "uvicorn", "seatmap.app:app_from_environ", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning",
        "--backlog", "4096",
    ]  # fmt: skip
    with log.open("wb") as out:
        # Its own process group, so the workers go with it whatever happens to this process.
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the server died on start-up; see {log}"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200 and len(worker_pids(proc.pid, workers)) == workers:
                        break
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        yield port, proc
    except BaseException:
        print(f"--- the server's log ({log}):\n" + log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_pids(master: int, workers: int) -> list[int]:
    """uvicorn --workers N: the master's children serve; with N = 1 the master serves itself."""
    if workers == 1:
        return [master]
    children = Path(f"/proc/{master}/task/{master}/children")
    found = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [p for p in found if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()]


def backing_pids(database: str, redis_hint: str) -> dict[str, list[int]]:
    """PostgreSQL backends serving the bench database, and the Redis server(s) it may be using."""
    found: dict[str, list[int]] = {"postgres": [], "redis": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if command.startswith("postgres: ") and f" {database} " in command:
            found["postgres"].append(int(entry.name))
        elif "redis-server" in command.split(" ")[0] and redis_hint in command:
            found["redis"].append(int(entry.name))
    return found


def interrupt_seconds() -> float:
    """CPU seconds all cores spent in irq + softirq so far (loopback networking lands here)."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]
    return (ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


def cpu_total(pids: list[int], before: dict[int, float] | None = None) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(pid) - (before or {}).get(pid, 0.0)
    return total


# ---- end to end ----------------------------------------------------------------------------------


@dataclass
class Tally:
    paid: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})


async def buyer(port: int, token: str, work: collections.deque[tuple[int, list[str]]], until: float,
                tally: Tally) -> None:  # fmt: skip
    http = Http("127.0.0.1", port)
    auth = {"authorization": f"Bearer {token}"}
    try:
        while time.monotonic() < until and work:
            screening, seats = work.popleft()
            marks = [time.perf_counter()]
            status, body = await http.request(
                "POST", "/api/holds", {"screening_id": screening, "seats": seats}, auth
            )
            if status != 201:
                tally.failed[f"hold {status}"] += 1
                continue
            hold_token = msgspec.json.decode(body)["token"]
            marks.append(time.perf_counter())
            status, body = await http.request("POST", "/api/orders", {"hold_token": hold_token},
                                              {**auth, "idempotency-key": uuid.uuid4().hex})  # fmt: skip
            if status != 201:
                tally.failed[f"order {status}"] += 1
                continue
            order_id = msgspec.json.decode(body)["id"]
            marks.append(time.perf_counter())
            status, body = await http.request("POST", f"/api/orders/{order_id}/payments", None, auth)
            if status != 201:
                tally.failed[f"pay {status}"] += 1
                continue
            page = urlsplit(msgspec.json.decode(body)["redirect_url"]).path
            marks.append(time.perf_counter())
            status, _ = await http.request("POST", f"{page}/approve")
            if status != 303:
                tally.failed[f"approve {status}"] += 1
                continue
            marks.append(time.perf_counter())
            status, body = await http.request("GET", f"/api/orders/{order_id}", None, auth)
            order = msgspec.json.decode(body)
            if status != 200 or order["status"] != "paid" or len(order["tickets"]) != 2:
                tally.failed[f"not paid ({order.get('status')})"] += 1
                continue
            marks.append(time.perf_counter())
            tally.paid += 1
            for step, start, end in zip(STEPS, marks[:-1], marks[1:], strict=True):
                tally.steps[step].append(end - start)
    finally:
        await http.close()


async def healthz(port: int, clients: int, seconds: float) -> int:
    """GET /healthz as fast as it answers: what the HTTP stack alone costs per request."""
    answered = 0
    until = time.monotonic() + seconds

    async def client() -> None:
        nonlocal answered
        http = Http("127.0.0.1", port)
        try:
            while time.monotonic() < until:
                status, _ = await http.request("GET", "/healthz")
                answered += status == 200
        finally:
            await http.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return answered


async def end_to_end(
    port: int, stage: Stage, work: collections.deque[tuple[int, list[str]]], seconds: float
) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    await asyncio.gather(*(buyer(port, t, work, until, tally) for t in stage.tokens))
    return tally


# ---- the bare baseline ---------------------------------------------------------------------------

BARE_ORDER: Final = """
INSERT INTO orders
    (user_id, screening_id, hold_token, status, currency, total, expires_at, paid_at, seats_published)
VALUES ($1, $2, $3, 'paid', 'IDR', 100000, now() + interval '15 minutes', now(), true) RETURNING id
"""
BARE_LINES: Final = """
INSERT INTO order_lines (order_id, position, seat_label, category, price)
SELECT $1, n - 1, seat, 'standard', 50000 FROM unnest($2::text[]) WITH ORDINALITY AS t(seat, n)
"""
BARE_PAYMENT: Final = """
INSERT INTO payments (order_id, provider, provider_ref, amount, currency, status)
VALUES ($1, 'simulated', $2, 100000, 'IDR', 'paid')
"""
BARE_EVENT: Final = """
INSERT INTO payment_events (provider, event_id, type, provider_ref, outcome)
VALUES ('simulated', $1, 'payment.paid', $2, 'paid')
"""
BARE_TICKETS: Final = """
INSERT INTO tickets (code, order_id, screening_id, seat_label, category, price)
SELECT code, $1, $2, seat, 'standard', 50000 FROM unnest($3::text[], $4::text[]) AS t(code, seat)
"""


async def bare(
    stage: Stage, work: collections.deque[tuple[int, list[str]]], seconds: float, workers: int
) -> int:
    pool = await asyncpg.create_pool(stage.database_url, min_size=workers, max_size=workers)
    assert pool is not None
    done = 0
    until = time.monotonic() + seconds

    async def loop(user: int) -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.monotonic() < until and work:
                screening, seats = work.popleft()
                ref = f"sim_{secrets.token_urlsafe(16)}"
                async with conn.transaction():
                    order = await conn.fetchval(
                        BARE_ORDER, user, screening, f"{screening}.{secrets.token_urlsafe(18)}"
                    )
                    await conn.execute(BARE_LINES, order, seats)
                    await conn.execute(BARE_PAYMENT, order, ref)
                    await conn.execute(BARE_EVENT, f"evt_{secrets.token_urlsafe(12)}", ref)
                    await conn.execute(
                        BARE_TICKETS, order, screening, [secrets.token_urlsafe(12) for _ in seats], seats
                    )
                done += 1

    try:
        await asyncio.gather(*(loop(stage.users[i % len(stage.users)]) for i in range(workers)))
    finally:
        await pool.close()
    return done


# ---- the profile ---------------------------------------------------------------------------------

# (label, a substring of a py-spy frame): a sample counts for every label its stack contains.
_ENDPOINTS: Final = (
    ("POST /api/holds", "create_hold (seatmap/live/holds.py"),
    ("POST /api/orders", "create_order (seatmap/sales/orders.py"),
    ("POST /api/orders/{id}/payments", "start_payment (seatmap/sales/payments.py"),
    ("POST /pay/{id}/approve (gateway)", "_decide (seatmap/simulated/provider.py"),
    ("  of which delivering the webhook", "Outbox.deliver_now (seatmap/simulated/outbox.py"),
    ("POST /api/payments/webhooks/simulated", "webhook (seatmap/sales/payments.py"),
    ("GET /api/orders/{id}", "get_order (seatmap/sales/orders.py"),
    ("outside endpoint functions (HTTP parsing, responses, protocol callbacks)", ""),
)
_INSIDE: Final = (
    ("auth: JWT + revocation check in Redis", "require (seatmap/accounts/auth.py"),
    ("PostgreSQL client (asyncpg)", "asyncpg/"),
    ("  of which returning connections (reset query)", "PoolConnectionHolder.release"),
    ("Redis client (redis-py)", "redis/"),
    ("the confirmation transaction", "_apply (seatmap/sales/payments.py"),
    ("showing seats sold (Holds.sell)", "publish_sold (seatmap/sales/settlement.py"),
    ("request/metrics middleware", "RequestLog.__call__ (seatmap/logs.py"),
    ("socket writes (syscalls, leaf frames)", "Transport.write"),
)


_IDLE: Final = ("Multiprocess.", "always_pong", "resource_tracker", "EpollSelector.select", "Popen.")


def summarise_profile(raw: Path) -> list[str]:
    """py-spy's collapsed stacks -> share of the web workers' busy samples per endpoint and part."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        # The uvicorn supervisor, the workers' ping threads and waiting in epoll are not work.
        if not count_text.isdigit() or any(idle in stack for idle in _IDLE):
            continue
        n = int(count_text)
        total += n
        in_endpoint = False
        for label, frame in _ENDPOINTS[:-1]:
            if frame in stack:
                counts[label] += n
                in_endpoint = in_endpoint or not label.startswith(" ")
        if not in_endpoint:
            counts[_ENDPOINTS[-1][0]] += n
        for label, frame in _INSIDE:
            if frame in (stack.rsplit(";", 1)[-1] if "leaf" in label else stack):
                counts[label] += n
    if total == 0:
        return ["  (no samples)"]
    out = ["  per endpoint (inclusive):"]
    out += [f"  {100 * counts[label] / total:5.1f} %  {label}" for label, _ in _ENDPOINTS]
    out.append("  across endpoints (inclusive, overlapping):")
    out += [f"  {100 * counts[label] / total:5.1f} %  {label}" for label, _ in _INSIDE]
    return out


# ---- the run -------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


async def run(urls: Urls, args: argparse.Namespace, tmp: Path) -> None:
    need = int(args.seconds * 1000) + 4 * args.buyers  # pairs: more than can be sold in the time
    web_screenings = -(-need // 500)
    stage = await build(urls, args.buyers, web_screenings + 1, 3 * web_screenings)
    try:
        web_work = pairs(stage, stage.web)
        with server(stage, urls.redis_url, args.workers, tmp / "server.log") as (port, proc):
            pids = worker_pids(proc.pid, args.workers)
            warm = collections.deque(list(web_work.popleft() for _ in range(4 * args.buyers)))
            await end_to_end(port, stage, warm, 30)  # caches, prepared statements, connections, scripts
            profiler = None
            if args.profile:
                py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                profiler = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                    [py_spy, "record", "--format", "raw", "--rate", "200", "--subprocesses", "--duration",
                     str(int(args.seconds)), "--pid", str(proc.pid), "--output", str(tmp / "profile.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(1.0)
            cpu0 = {pid: cpu_seconds(pid) for pid in pids}
            redis_hint = str(tmp) if not args.redis_url else urlsplit(urls.redis_url).netloc.rsplit("@")[-1]
            backing0 = {pid: cpu_seconds(pid) for pids_ in backing_pids(stage.database, redis_hint).values()
                        for pid in pids_}  # fmt: skip
            me0, busy0, t0 = cpu_seconds(os.getpid()), machine_busy_seconds(), time.monotonic()
            irq0 = interrupt_seconds()
            tally = await end_to_end(port, stage, web_work, args.seconds)
            elapsed = time.monotonic() - t0
            server_cpu = sum(cpu_seconds(pid) - cpu0[pid] for pid in pids)
            me = cpu_seconds(os.getpid()) - me0
            busy = machine_busy_seconds() - busy0
            irq = interrupt_seconds() - irq0
            backing = {name: cpu_total(found, backing0) for name, found in
                       backing_pids(stage.database, redis_hint).items()}  # fmt: skip
            if profiler is not None:
                profiler.wait(timeout=args.seconds + 30)
            floor_seconds = max(args.seconds / 2, 3.0)
            floor_rate = await healthz(port, args.buyers, floor_seconds) / floor_seconds
        bare_work = pairs(stage, stage.bare)
        bare_busy0, bt0 = machine_busy_seconds(), time.monotonic()
        bare_done = await bare(stage, bare_work, args.seconds, args.buyers)
        bare_elapsed = time.monotonic() - bt0
        bare_busy = machine_busy_seconds() - bare_busy0
        conn = await asyncpg.connect(stage.database_url)
        try:
            paid_web = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE status = 'paid' AND screening_id = ANY($1)", stage.web
            )
            tickets_web = await conn.fetchval(
                "SELECT count(*) FROM tickets WHERE screening_id = ANY($1)", stage.web
            )
            unpublished = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE status = 'paid' AND NOT seats_published"
            )
        finally:
            await conn.close()
    finally:
        await teardown(stage, urls.redis_url)

    rate, bare_rate = tally.paid / elapsed, bare_done / bare_elapsed
    print(f"\ncheckout, {args.buyers} concurrent buyers, 2 seats per order, {args.workers} web worker(s), "
          f"{os.cpu_count()} CPUs, {elapsed:.1f} s per phase")  # fmt: skip
    print(
        f"  end to end      {rate:8.0f} paid orders/s   ({tally.paid} orders,"
        f" failed: {dict(tally.failed) or 0})"
    )
    print(
        f"  bare asyncpg    {bare_rate:8.0f} orders/s        ({bare_done} orders,"
        " same rows, one transaction each)"
    )
    print(
        f"  ratio           {rate / bare_rate:8.1%} of the bare loop"
        "   (target: >= 300 paid orders/s end to end)"
    )
    print(f"  HTTP floor      {floor_rate / 6:8.0f} orders/s        (the same server answers GET /healthz "
          f"{floor_rate:.0f}/s; an order is 6 requests: 5 by the buyer, 1 webhook)")  # fmt: skip
    print(f"  checked         {paid_web} paid orders in PostgreSQL (incl. warm-up), {tickets_web} tickets, "
          f"{unpublished} not yet shown sold")  # fmt: skip
    print("\n  per order, client round trips (ms):   p50     p99")
    for step in STEPS:
        values = tally.steps[step]
        print(f"    {step:<10}{'':>24}{_pct(values, 0.5):6.1f}  {_pct(values, 0.99):6.1f}")
    total = [sum(parts) for parts in zip(*(tally.steps[s] for s in STEPS), strict=True)]
    print(f"    {'whole':<10}{'':>24}{_pct(total, 0.5):6.1f}  {_pct(total, 0.99):6.1f}")
    if tally.paid:
        per = 1000 / tally.paid
        others = max(busy - server_cpu - me - backing["postgres"] - backing["redis"] - irq, 0.0)
        print("\n  CPU per paid order (ms)  [machine busy "
              f"{busy / elapsed:.2f} of {os.cpu_count()} cores during the end-to-end phase]")  # fmt: skip
        print(f"    web workers      {server_cpu * per:6.2f}")
        print(f"    load generator   {me * per:6.2f}")
        print(f"    PostgreSQL       {backing['postgres'] * per:6.2f}   (the bench database's backends)")
        print(f"    Redis            {backing['redis'] * per:6.2f}")
        print(f"    irq + softirq    {irq * per:6.2f}   (the kernel's loopback networking, mostly)")
        print(f"    everything else  {others * per:6.2f}   (whatever else runs on the machine)")
        if bare_done:
            print(f"    bare loop, whole machine  {bare_busy * 1000 / bare_done:6.2f}")
    if args.profile:
        print("\n  where the web workers' time goes (py-spy samples while busy):")
        profile = tmp / "profile.txt"
        print("\n".join(summarise_profile(profile)) if profile.exists() else "  (py-spy wrote nothing)")
        if args.profile_out and profile.exists():
            shutil.copy(profile, args.profile_out)
    print(flush=True)  # before the embedded servers' exit handlers run


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="sample the web workers with py-spy")
    parser.add_argument("--profile-out", type=Path, help="also keep py-spy's collapsed stacks here")
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: servers stopped, database dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seatmap-bench-")))
        if args.database_url and args.redis_url:
            urls = Urls(args.database_url, args.redis_url)
        else:
            urls = stack.enter_context(embedded_servers(tmp, args.database_url, args.redis_url))
        asyncio.run(run(urls, args, tmp))


if __name__ == "__main__":
    main()
