"""`python -m bench.scaleout`: holds/s and server CPU per hold, one Redis against a 3-primary
Redis Cluster, in the same run (issue 16). See docs/topics/scale-out.md.

For each backend (a private `redis-server`, then the local cluster of tests/redis_cluster.py,
both from the machine's Redis 7): a fresh database, two `uvicorn seatmap.app:app_from_environ`
web processes, `--screenings` screenings, and `--clients` REST clients that hold one random seat
and release it again, alternating between the processes, for `--duration` seconds. CPU is read
from /proc for the web processes and for every redis-server, so "CPU per hold" is what the
server side spends on one hold + one release, split into web and Redis. After the run, each
primary's `CLIENT LIST TYPE pubsub` shows the sharded subscriptions (one per web process that
watches a screening there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets

from seatmap.composition import open_runtime
from seatmap.db import migrate
from seatmap.settings import Secret, Settings
from tests.redis_cluster import REDIS_SERVER, LocalCluster, Node, _free_ports, unavailable
from tests.support import free_port, make_screening, process_environ, quick_users

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@contextlib.contextmanager
def private_redis() -> Iterator[Node]:
    """One plain redis-server on a free port, no persistence, stopped by its PID."""
    (port,) = _free_ports(1)
    folder = tempfile.mkdtemp(prefix="seatmap-bench-redis-")
    node = Node(port)
    node.process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder, "--notify-keyspace-events", "Ex"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        LocalCluster._wait(node.up, 30, "redis-server up")
        yield node
    finally:
        node.process.terminate()
        node.process.wait(timeout=10)


@contextlib.asynccontextmanager
async def database(admin_url: str) -> AsyncIterator[str]:
    name = f"seatmap_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = admin_url.rsplit("/", 1)[0] + "/" + name
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _spawn(port: int, environ: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "seatmap.app:app_from_environ", "--factory", "--host"]
    command += ["127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    return subprocess.Popen(command, env=environ)


@contextlib.asynccontextmanager
async def web(settings: Settings, count: int) -> AsyncIterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    ports = [free_port() for _ in range(count)]
    extra = {
        "SEATMAP_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}", "SEATMAP_LOG_LEVEL": "WARNING",
        "SEATMAP_WS_MAX_PER_ADDRESS": "0", "SEATMAP_HOLD_SEATS_PER_ADDRESS": "0",
        "SEATMAP_REDIS_CLUSTER": "1" if settings.redis_cluster else "0",
    }  # fmt: skip
    environ = process_environ(settings, **extra)
    procs = []
    try:
        for port in ports:
            procs.append((f"http://127.0.0.1:{port}", _spawn(port, environ)))
        async with httpx.AsyncClient() as client:
            for url, proc in procs:
                deadline = time.monotonic() + 60
                while True:
                    assert proc.poll() is None, "a web process died on start-up"
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(f"{url}/readyz")).status_code == 200:
                            break
                    assert time.monotonic() < deadline, "web processes did not become ready"
                    await asyncio.sleep(0.2)
        yield procs
    finally:
        for _, proc in procs:
            proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def run_one(
    args: argparse.Namespace, name: str, redis_url: str, nodes: list[Node], cluster: bool
) -> dict[str, Any]:
    async with database(args.database_url) as db_url:
        settings = Settings(
            database_url=db_url, redis_url=redis_url,
            data_dir=Path(tempfile.mkdtemp(prefix="seatmap-bench-")), dev=True,
            jwt_secret=Secret("bench-secret-" + "x" * 40), redis_prefix=f"b{uuid.uuid4().hex[:8]}",
            log_json=False, redis_cluster=cluster,
        )  # fmt: skip
        async with open_runtime(settings, "worker") as rt:
            screenings = [
                await make_screening(rt, ["S" * 20] * 10, strand_rule=False) for _ in range(args.screenings)
            ]
            users = await quick_users(rt, args.clients)
        seats = [f"{row}{n}" for row in "ABCDEFGHIJ" for n in range(1, 21)]
        async with web(settings, 2) as procs:
            # A viewer per screening per process, so every process subscribes every screening.
            viewers = [
                await websockets.connect(f"{url.replace('http', 'ws')}/ws/screenings/{s}")
                for url, _ in procs for s in screenings
            ]  # fmt: skip
            for v in viewers:
                await v.recv()
            ok = refused = errors = 0
            pids = [p.pid for _, p in procs]
            redis_pids = [n.process.pid for n in nodes if n.process is not None and n.alive]
            primary_pids = [
                n.process.pid for n in nodes
                if n.process is not None and n.alive and "role:master" in n.cli("INFO", "replication")
            ]  # fmt: skip
            primaries_before = sum(cpu_seconds(p) for p in primary_pids)
            # What the servers spend doing nothing (cluster bus, replication pings, presence
            # rounds), per second, to tell apart from what the holds cost.
            idle_web = sum(cpu_seconds(p) for p in pids)
            idle_redis = sum(cpu_seconds(p) for p in redis_pids)
            await asyncio.sleep(args.idle)
            idle_web = (sum(cpu_seconds(p) for p in pids) - idle_web) / args.idle
            idle_redis = (sum(cpu_seconds(p) for p in redis_pids) - idle_redis) / args.idle
            deadline = time.monotonic() + args.duration
            web_before = sum(cpu_seconds(p) for p in pids)
            redis_before = sum(cpu_seconds(p) for p in redis_pids)
            started = time.monotonic()

            async def client_loop(i: int) -> None:
                nonlocal ok, refused, errors
                rng = random.Random(i)
                headers = users[i].headers
                async with httpx.AsyncClient(timeout=30) as http:
                    n = 0
                    while time.monotonic() < deadline:
                        url = procs[n % 2][0]
                        n += 1
                        body = {"screening_id": rng.choice(screenings), "seats": [rng.choice(seats)]}
                        r = await http.post(f"{url}/api/holds", json=body, headers=headers)
                        if r.status_code == 201:
                            ok += 1
                            await http.delete(f"{url}/api/holds/{r.json()['token']}", headers=headers)
                        elif r.status_code == 409:
                            refused += 1
                        else:
                            errors += 1

            await asyncio.gather(*(client_loop(i) for i in range(args.clients)))
            seconds = time.monotonic() - started
            web_cpu = sum(cpu_seconds(p) for p in pids) - web_before - idle_web * seconds
            redis_cpu = sum(cpu_seconds(p) for p in redis_pids) - redis_before - idle_redis * seconds
            primaries_cpu = sum(cpu_seconds(p) for p in primary_pids) - primaries_before
            pubsub = {}
            for node in nodes:
                if node.alive and ("role:master" in node.cli("INFO", "replication")):
                    listing = node.cli("CLIENT", "LIST", "TYPE", "pubsub").splitlines()
                    pubsub[node.port] = len([line for line in listing if line.strip()])
            for v in viewers:
                await v.close()
    return {
        "backend": name, "holds": ok, "refused": refused, "errors": errors, "seconds": round(seconds, 2),
        "holds_per_s": round(ok / seconds, 1), "web_cpu_us_per_hold": round(web_cpu / max(ok, 1) * 1e6),
        "redis_cpu_us_per_hold": round(redis_cpu / max(ok, 1) * 1e6),
        "primaries_cpu_us_per_hold": round(primaries_cpu / max(ok, 1) * 1e6),
        "server_cpu_us_per_hold": round((web_cpu + redis_cpu) / max(ok, 1) * 1e6),
        "idle_web_cpu_ms_per_s": round(idle_web * 1000, 1),
        "idle_redis_cpu_ms_per_s": round(idle_redis * 1000, 1),
        "pubsub_connections_per_primary": pubsub,
    }  # fmt: skip


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    problem = unavailable()
    if problem:
        raise SystemExit(f"bench.scaleout needs a Redis 7 redis-server: {problem}")
    results = []
    for _ in range(args.rounds):
        with private_redis() as node:
            results.append(await run_one(args, "single", node.url + "/0", [node], cluster=False))
        made = LocalCluster.start()
        try:
            results.append(await run_one(args, "cluster", made.url, made.nodes, cluster=True))
        finally:
            made.stop()
    return results


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n")[0])
    p.add_argument("--screenings", type=int, default=30)
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured first, subtracted")
    p.add_argument("--rounds", type=int, default=1, help="single then cluster, this many times")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    results = asyncio.run(bench(args))
    for row in results:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
