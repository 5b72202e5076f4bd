"""Several real uvicorn processes sharing one Redis and one PostgreSQL behave as one service."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.redis_cluster import on_every_node
from tests.support import (
    TIMEOUT_FACTOR,
    Server,
    Viewer,
    free_port,
    make_screening,
    process_environ,
    quick_users,
)


def _start(port: int, environ: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "seatmap.app:app_from_environ", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    return subprocess.Popen(command, env=environ)


@contextlib.asynccontextmanager
async def web_processes(settings: Settings, count: int, **env: str) -> AsyncIterator[list[Server]]:
    """`count` separate `uvicorn seatmap.app:app_from_environ` processes, as the Procfile runs them.
    Their public URL (what a load balancer would be) is the first one's address."""
    ports = [free_port() for _ in range(count)]
    public = {"SEATMAP_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}"}
    environ = process_environ(settings, SEATMAP_LOG_LEVEL="WARNING", **(public | env))
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[Server] = []
    try:
        for port in ports:
            procs.append(_start(port, environ))
            servers.append(Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"))
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30 * TIMEOUT_FACTOR
            for srv, proc in zip(servers, procs, strict=True):
                while True:
                    assert proc.poll() is None, "a web process died on start-up"
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(f"{srv.http}/readyz")).status_code == 200:
                            break
                    assert time.monotonic() < deadline, "web processes did not become ready"
                    await asyncio.sleep(0.1)
        yield servers
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def test_hold_on_one_process_reaches_viewer_on_another(rt: Runtime, settings: Settings) -> None:
    """A hold made through process 1 reaches a viewer on process 2 with the next seq, well under a second."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 4)
    (alice,) = await quick_users(rt, 1)
    async with web_processes(settings, 2) as (one, two), httpx.AsyncClient(base_url=one.http) as client:
        viewer = await Viewer.connect(two, screening)
        snap = await viewer.next("snapshot")
        sent = time.time()
        r = await client.post(
            "/api/holds", json={"screening_id": screening, "seats": ["B4"]}, headers=alice.headers
        )
        assert r.status_code == 201
        delta = await viewer.next("delta")
        latency = time.time() - sent
        assert delta["seq"] == snap["seq"] + 1
        assert delta["changes"] == [{"seat": "B4", "state": "held"}]
        assert latency < 0.5 * TIMEOUT_FACTOR, f"{latency * 1000:.0f} ms"
        # Presence counts viewers on every process.
        other = await Viewer.connect(one, screening)
        await other.next("snapshot")
        async with asyncio.timeout(5 * TIMEOUT_FACTOR):
            while (await viewer.recv(within=5)).get("viewers") != 2:
                pass
        await viewer.close()
        await other.close()


async def freed_by(v: Viewer, deadline: float) -> Counter[str]:
    """What one viewer saw freed of a hold of three seats expiring at `deadline`: its delta, then
    the frees, soon after the deadline, and nothing more (each seat freed once)."""
    await v.next("delta")
    freed: Counter[str] = Counter()
    while sum(freed.values()) < 3:
        delta = await v.next("delta", within=4)
        freed.update(c["seat"] for c in delta["changes"] if c["state"] == "free")
    assert time.time() - deadline < 2.0 * TIMEOUT_FACTOR
    with pytest.raises(TimeoutError):
        await v.next("delta", within=0.7)
    return freed


@pytest.mark.serial  # turns Redis's keyspace notifications off (server-wide)
@pytest.mark.parametrize("notifications", ["1", "0"], ids=["keyspace-events", "sweeper-only"])
async def test_expiry_across_processes_frees_each_seat_once(
    rt: Runtime, settings: Settings, notifications: str
) -> None:
    """A 1 s hold expires: viewers on both processes get exactly one `free` per seat within 2 s."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 2)
    (alice,) = await quick_users(rt, 1)
    if notifications == "0":
        await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", "")
    try:
        async with (
            web_processes(
                settings, 2, SEATMAP_HOLD_TTL="1", SEATMAP_EXPIRY_NOTIFICATIONS=notifications
            ) as servers,
            httpx.AsyncClient(base_url=servers[0].http) as client,
        ):
            viewers = [await Viewer.connect(srv, screening) for srv in servers for _ in range(2)]
            for v in viewers:
                await v.next("snapshot")
            r = await client.post(
                "/api/holds",
                json={"screening_id": screening, "seats": ["A1", "A2", "B1"]},
                headers=alice.headers,
            )
            deadline = datetime.fromisoformat(r.json()["expires_at"]).timestamp()

            for freed in await asyncio.gather(*(freed_by(v, deadline) for v in viewers)):
                assert freed == Counter({"A1": 1, "A2": 1, "B1": 1})
            for v in viewers:
                await v.close()
    finally:
        await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", "Ex")


async def test_a_disabled_users_token_is_refused_on_every_process_at_once(
    rt: Runtime, settings: Settings
) -> None:
    """A cashier's token, just accepted by both processes (so each trusts it), is 401 on both at
    the very next request after an admin disabled the account through one of them."""
    admin, *cashiers = await quick_users(rt, 1, "admin") + await quick_users(rt, 5, "staff")
    async with web_processes(settings, 2) as servers, httpx.AsyncClient() as client:
        for cashier in cashiers:
            for srv in servers:
                assert (await client.get(f"{srv.http}/api/me", headers=cashier.headers)).status_code == 200
            r = await client.patch(
                f"{servers[0].http}/api/admin/users/{cashier.id}",
                json={"disabled": True},
                headers=admin.headers,
            )
            assert r.status_code == 200, r.text
            for srv in reversed(servers):
                r = await client.get(f"{srv.http}/api/me", headers=cashier.headers)
                assert r.status_code == 401, srv
                assert r.json()["error"]["code"] == "invalid_token"
