"""`python -m bench.restock`: how late expired holds come back on sale, as viewers see it (issue 13).

For each mode (keyspace notifications on, then off: the sweeper alone) a fresh seatmap server
(one uvicorn process, as the Procfile starts it) serves `--screenings` screenings of 600 seats,
watched by `--viewers` sockets spread over them. This process then makes `--holds` one-seat
holds with a `--ttl` s TTL through `Holds.create` (the Lua path behind `POST /api/holds`), as
fast as Redis answers, and lets them all expire. Each viewer notes when the `free` of each held
seat reaches it; the lag is that moment minus the hold's deadline (`expires_at`), same clock.
The viewers run in a process of their own, so making the holds does not delay their reading.

It prints, per mode: p50/p99/max lag over every (viewer, seat), the same of the restock's commit
(the `free` delta's `ts`, so the rest is fan-out and delivery), holds made, seats freed more than
once or never (each must be exactly once, invariant 4), and the server's CPU. Compare the
ratios of one run (bench/README.md); the issue's target is p99 <= 500 ms at 2,000 holds, 2 s TTL,
20 screenings, 100 viewers, in both modes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
from websockets.asyncio.client import connect

from bench import servers, stage
from bench.servers import Kind
from seatmap.accounts.auth import Principal
from seatmap.composition import open_runtime
from seatmap.embedded import embedded_servers
from seatmap.errors import SeatmapError
from seatmap.settings import Secret, Settings

_ctx = multiprocessing.get_context("spawn")


@dataclass
class Viewer:
    screening: int
    freed: dict[str, list[float]] = field(default_factory=dict)  # seat -> arrival times of `free`
    committed: dict[str, float] = field(default_factory=dict)  # seat -> its first `free` delta's ts
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, message: dict[str, Any], at: float) -> None:
        if message.get("type") == "batch":
            for inner in message["messages"]:
                self.take(inner, at)
        elif message.get("type") == "delta":
            for change in message["changes"]:
                if change.get("state") == "free":
                    self.freed.setdefault(change["seat"], []).append(at)
                    self.committed.setdefault(change["seat"], message["ts"] / 1000)
        elif message.get("type") == "snapshot":
            self.ready.set()


async def _watch(url: str, viewer: Viewer, stop: asyncio.Event) -> None:
    async with connect(url, max_size=2**22, compression=None) as ws:
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    text = await ws.recv()
            except TimeoutError:
                continue
            viewer.take(json.loads(text), time.time())


async def _view(conn: Connection, urls: list[tuple[str, int]], wait: float) -> None:
    """The viewers' process: connect, say ready, then note every `free` until each viewer saw each
    seat it is told of (or `wait` s passed), and send back when each arrived."""
    stop = asyncio.Event()
    viewers = [Viewer(screening) for _, screening in urls]
    watching = [asyncio.create_task(_watch(url, v, stop)) for (url, _), v in zip(urls, viewers, strict=True)]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(v.ready.wait() for v in viewers))
        conn.send("ready")
        expected: dict[int, list[str]] = await asyncio.to_thread(conn.recv)
        until = time.time() + wait
        while time.time() < until:
            if all(all(seat in v.freed for seat in expected.get(v.screening, [])) for v in viewers):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a second `free` of the same seat would have arrived by now
    finally:
        stop.set()
        await asyncio.gather(*watching, return_exceptions=True)
    conn.send([(v.screening, v.freed, v.committed) for v in viewers])


def _viewers_main(conn: Connection, urls: list[tuple[str, int]], wait: float) -> None:
    """The viewers' process entry point (multiprocessing, spawn)."""
    asyncio.run(_view(conn, urls, wait))


@dataclass(frozen=True)
class Mode:
    name: str
    notifications: bool


@dataclass(frozen=True)
class Measured:
    mode: str
    holds: int
    refused: int
    lags_ms: list[float]
    commit_lags_ms: list[float]  # the restock's commit (the delta's ts) - the deadline
    twice: int  # (viewer, seat) pairs freed more than once
    never: int  # (viewer, seat) pairs never freed within the wait
    cpu_s: float

    def row(self) -> dict[str, Any]:
        lags = sorted(self.lags_ms)
        return {
            "mode": self.mode,
            "holds": self.holds,
            "refused": self.refused,
            "p50 ms": _pct(lags, 50),
            "p99 ms": _pct(lags, 99),
            "max ms": round(lags[-1]) if lags else math.nan,
            "commit p50": _pct(sorted(self.commit_lags_ms), 50),
            "commit p99": _pct(sorted(self.commit_lags_ms), 99),
            "freed twice": self.twice,
            "never freed": self.never,
            "server CPU s": round(self.cpu_s, 2),
        }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return round(values[min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1)])


def _who(user: int) -> Principal:
    return Principal(user_id=user, role="customer", jti="bench", expires_at=int(time.time()) + 3600)


async def measure(st: stage.Stage, mode: Mode, args: argparse.Namespace, logs: Path) -> Measured:
    screenings = [st.screening, *st.hold_screenings]
    env = {
        "SEATMAP_EXPIRY_NOTIFICATIONS": "1" if mode.notifications else "0",
        "SEATMAP_SWEEP_INTERVAL": str(args.sweep_interval),
        "SEATMAP_HOLD_TTL": str(args.ttl),
    }
    prefix = f"{st.prefix}{mode.name}"  # a fresh key space per mode: empty maps, no earlier holds
    backing = replace(st.backing(), prefix=prefix)
    async with servers.running(Kind("seatmap", "websockets-sansio"), backing, logs, env) as server:
        base = f"ws://127.0.0.1:{server.port}/ws/screenings"
        urls = [
            (f"{base}/{s}?batch=1", s) for s in (screenings[i % len(screenings)] for i in range(args.viewers))
        ]
        parent, child = _ctx.Pipe()
        process = _ctx.Process(target=_viewers_main, args=(child, urls, args.ttl + args.wait), daemon=True)
        process.start()
        try:
            if await asyncio.to_thread(parent.recv) != "ready":
                raise RuntimeError("the viewers did not connect")
            settings = Settings(
                database_url=st.database_url, redis_url=st.redis_url, data_dir=Path(tempfile.gettempdir()),
                dev=True, jwt_secret=Secret(st.jwt_secret), redis_prefix=prefix, hold_ttl=args.ttl,
                holds_per_account=0, hold_seats_per_address=0,
            )  # fmt: skip
            deadlines: dict[tuple[int, str], float] = {}
            refused = 0
            cpu0 = server.cpu_seconds()
            async with open_runtime(settings, "worker") as rt:
                per = args.holds // len(screenings)
                work = [
                    (screening, st.labels[i], st.users[n * per + i])
                    for n, screening in enumerate(screenings)
                    for i in range(per)
                ]
                limit = asyncio.Semaphore(args.concurrency)

                async def hold(screening: int, seat: str, user: int) -> None:
                    nonlocal refused
                    async with limit:
                        try:
                            made = await rt.holds.create(_who(user), screening, [seat])
                        except SeatmapError:
                            refused += 1
                            return
                    deadlines[(screening, seat)] = datetime.fromisoformat(made.expires_at).timestamp()

                await asyncio.gather(*(hold(*w) for w in work))
            expected: dict[int, list[str]] = {}
            for screening, seat in deadlines:
                expected.setdefault(screening, []).append(seat)
            parent.send(expected)
            seen: list[tuple[int, dict[str, list[float]], dict[str, float]]] = await asyncio.to_thread(
                parent.recv
            )
            cpu = server.cpu_seconds() - cpu0
        finally:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    lags: list[float] = []
    commits: list[float] = []
    twice = never = 0
    for viewer_screening, freed, committed in seen:
        for (scr, seat), deadline in deadlines.items():
            if scr != viewer_screening:
                continue
            arrivals = freed.get(seat, [])
            if not arrivals:
                never += 1
                continue
            twice += len(arrivals) > 1
            lags.append((arrivals[0] - deadline) * 1000)
            commits.append((committed[seat] - deadline) * 1000)
    return Measured(mode.name, len(deadlines), refused, lags, commits, twice, never, cpu)


async def bench(args: argparse.Namespace) -> list[Measured]:
    servers.raise_fd_limit()
    data_dir = Path(tempfile.mkdtemp(prefix="seatmap-bench-restock-"))
    results: list[Measured] = []
    try:
        with embedded_servers(data_dir, args.database_url, args.redis_url) as urls:
            st = await stage.build(urls, hold_screenings=args.screenings - 1, users=args.holds)
            try:
                conn = await asyncpg.connect(st.database_url)
                try:  # one-seat holds side by side, made concurrently, must not be refused for a gap
                    await conn.execute("UPDATE screenings SET no_single_seats = false")
                finally:
                    await conn.close()
                modes = [Mode("notifications", True), Mode("sweeper", False)]
                for mode in modes:
                    if args.mode in ("both", mode.name):
                        results.append(await measure(st, mode, args, data_dir))
            finally:
                with contextlib.suppress(Exception):
                    for suffix in ("notifications", "sweeper"):
                        await stage.tear_down(replace(st, prefix=st.prefix + suffix))
                    await stage.tear_down(st)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.restock", description=__doc__.split("\n")[0])
    p.add_argument("--holds", type=int, default=2000, help="one-seat holds, spread over the screenings")
    p.add_argument("--screenings", type=int, default=20)
    p.add_argument("--viewers", type=int, default=100, help="viewer sockets, spread over the screenings")
    p.add_argument("--ttl", type=int, default=2, help="hold TTL in seconds")
    p.add_argument("--sweep-interval", type=float, default=0.5, help="the server's SEATMAP_SWEEP_INTERVAL")
    p.add_argument("--concurrency", type=int, default=64, help="hold requests in flight at once")
    p.add_argument("--wait", type=float, default=15.0, help="seconds after the TTL to wait for every free")
    p.add_argument("--mode", choices=("both", "notifications", "sweeper"), default="both")
    p.add_argument("--database-url", help="PostgreSQL to create the bench database in (default: embedded)")
    p.add_argument("--redis-url", help="Redis to use (default: embedded; the run changes its CONFIG)")
    p.add_argument("--json", type=Path, help="also write the results here (bench/out/ is gitignored)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.holds > 600 * args.screenings:
        raise SystemExit("at most 600 holds per screening")
    results = asyncio.run(bench(args))
    rows = [r.row() for r in results]
    columns = list(rows[0]) if rows else []
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"args": vars(args) | {"json": str(args.json)}, "rows": rows}
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
