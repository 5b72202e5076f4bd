"""Operational endpoints, error shapes of the router itself, and request ids (metrics: test_metrics.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from seatmap.app import create_app
from seatmap.settings import Settings
from tests.conftest import running, single_redis_only
from tests.support import TIMEOUT_FACTOR


class RedisLink:
    """A TCP forwarder in front of Redis that the test can cut, like a network partition.

    The app refuses to finish starting without Redis (its pub/sub listener must connect), so
    "Redis unreachable" is tested the way it happens in production: it goes away later.
    """

    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> str:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        db = self.target.path.strip("/") if self.target.scheme != "unix" else ""
        return f"redis://127.0.0.1:{port}/{db or 0}"

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target.scheme == "unix":
            return await asyncio.open_unix_connection(self.target.path)
        return await asyncio.open_connection(self.target.hostname, self.target.port or 6379)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._upstream()
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


async def test_healthz(client: httpx.AsyncClient) -> None:
    """/healthz says the process is alive, and which process answered."""
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert isinstance(response.json()["pid"], int)


async def test_readyz_when_both_answer(client: httpx.AsyncClient) -> None:
    """/readyz is 200 and names both checks when PostgreSQL and Redis answer."""
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


@single_redis_only  # a TCP gate in front of one Redis
async def test_readyz_503_when_redis_is_unreachable(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    """When Redis becomes unreachable the process still lives (/healthz) but /readyz answers 503."""
    link = RedisLink(redis_url)
    settings = make_settings(redis_url=await link.open())
    async with (
        running(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        assert (await client.get("/readyz")).status_code == 200
        await link.cut()
        assert (await client.get("/healthz")).status_code == 200
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"].startswith("error")


async def test_unknown_api_route_is_json_404(client: httpx.AsyncClient) -> None:
    """An unknown /api path answers 404 in the JSON error shape, not an HTML page."""
    response = await client.get("/api/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"]


async def test_wrong_method_on_api_route_is_json_405(client: httpx.AsyncClient) -> None:
    """GET on a POST-only /api route answers 405 in the JSON error shape."""
    response = await client.get("/api/auth/login")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_request_id_echoed_or_generated(client: httpx.AsyncClient) -> None:
    """A caller's X-Request-ID comes back unchanged; without one (or a bad one) a new id is made."""
    echoed = await client.get("/healthz", headers={"X-Request-ID": "router-abc.123"})
    assert echoed.headers["x-request-id"] == "router-abc.123"
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert first and second and first != second
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "evil\tvalue with spaces"})
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", unsafe.headers["x-request-id"])
    assert unsafe.headers["x-request-id"] != "evil\tvalue with spaces"
