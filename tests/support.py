"""Plain helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import re
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from seatmap.accounts import users
from seatmap.accounts.auth import Role
from seatmap.runtime import Runtime
from seatmap.settings import Settings

# Slow machines (or PYTHONASYNCIODEBUG=1) scale every timeout by this factor.
TIMEOUT_FACTOR: Final = float(os.environ.get("SEATMAP_TESTS_TIMEOUT_FACTOR", "1"))
PASSWORD: Final = "correct horse battery"


def free_port() -> int:
    """A port nothing listens on now (for a server that must come back where another was)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of the samples called `name` (`seatmap_holds_total`, `…_bucket`, `…_count`) whose
    labels include `labels`, in a /metrics page parsed by prometheus_client's own parser (which
    fails on anything that is not valid exposition text). 0 when none match: a counter whose
    labels were never used has no sample yet. Counters are per process and several apps share
    the test process: compare two scrapes, never one scrape with a constant."""
    wanted = dict(labels or {})
    return math.fsum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and wanted.items() <= sample.labels.items()
    )


@dataclass(frozen=True)
class Server:
    http: str
    ws: str
    # The server's own Runtime (in-process servers only), to look inside it.
    runtime: Runtime | None = None


@dataclass(frozen=True)
class User:
    id: int
    email: str
    password: str
    role: Role
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_user(
    rt: Runtime, role: Role = "customer", *, email: str | None = None, verified: bool = True
) -> User:
    """An account with a verified email (as holding and buying need), unless `verified=False`."""
    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    async with rt.pool.acquire() as conn:
        user_id = await users.create_user(
            conn, email=email, password=PASSWORD, name=f"Test {role}", role=role, verified=verified
        )
    return User(user_id, email, PASSWORD, role)


async def latest_code(rt: Runtime, email: str) -> str:
    """The code in the newest mail to `email`, read from the outbox as the user reads the mail."""
    async with rt.pool.acquire() as conn:
        body = await conn.fetchval(
            "SELECT body FROM mail_outbox WHERE lower(recipient) = lower($1) ORDER BY id DESC LIMIT 1", email
        )
    assert body is not None, f"no mail to {email}"
    match = re.search(r"\b(\d{6})\b", body)
    assert match is not None, body
    return match[1]


async def login(client: httpx.AsyncClient, user: User) -> User:
    response = await client.post("/api/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    return User(user.id, user.email, user.password, user.role, response.json()["access_token"])


async def logged_in(rt: Runtime, client: httpx.AsyncClient, role: Role = "customer") -> User:
    return await login(client, await create_user(rt, role))


async def make_screening(
    rt: Runtime,
    rows: list[str] | None = None,
    *,
    ga: Sequence[tuple[str, int]] = (),
    starts_in: timedelta = timedelta(days=1),
    status: str = "scheduled",
    strand_rule: bool = True,
) -> int:
    """A cinema, an auditorium with this layout, a movie and one screening of it; its id.

    `strand_rule=False` turns off the no-stranded-seat rule, for tests about other things.
    """
    from seatmap.catalog.auditoriums import insert_auditorium
    from seatmap.catalog.layouts import GaArea, LayoutSpec

    rows = rows if rows is not None else ["SSSSSSSSSS"] * 10
    spec = LayoutSpec(rows=rows or None, ga=[GaArea(name=n, capacity=c) for n, c in ga])
    starts = datetime.now(UTC) + starts_in
    async with rt.pool.acquire() as conn, conn.transaction():
        cinema = await conn.fetchval(
            "INSERT INTO cinemas (name, city, timezone) VALUES ($1, 'Jakarta', 'Asia/Jakarta') RETURNING id",
            f"Cinema {uuid.uuid4().hex[:6]}",
        )
        auditorium = await insert_auditorium(conn, cinema, "Studio 1", spec)
        movie = await conn.fetchval(
            "INSERT INTO movies (title, duration_minutes) VALUES ('Test film', 100) RETURNING id"
        )
        screening: int = await conn.fetchval(
            "INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at, status, no_single_seats)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            auditorium.id, movie, starts, starts + timedelta(hours=2), status, strand_rule,
        )  # fmt: skip
        for category in ("standard", "premium", "vip"):
            await conn.execute(
                "INSERT INTO screening_prices (screening_id, category, amount) VALUES ($1, $2, 50000)",
                screening, category,
            )  # fmt: skip
    return screening


class Viewer:
    """A WebSocket client on one screening that keeps every message it receives, decoded."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.messages: list[dict[str, Any]] = []  # every message, batches unpacked
        self.frames = 0
        self.batches = 0
        self._unread: collections.deque[dict[str, Any]] = collections.deque()

    @classmethod
    async def connect(
        cls, server: Server, screening: int, *, since: int | None = None, batch: bool = False, **kw: Any
    ) -> Viewer:
        params = {"since": since} if since is not None else {}
        if batch:
            params["batch"] = 1
        query = urlencode(params)
        url = f"{server.ws}/ws/screenings/{screening}" + (f"?{query}" if query else "")
        return cls(await websockets.connect(url, open_timeout=5 * TIMEOUT_FACTOR, **kw))

    async def recv(self, within: float = 2.0) -> dict[str, Any]:
        """The next message; a `batch` frame's messages come one by one, in order."""
        if not self._unread:
            raw = await asyncio.wait_for(self.conn.recv(), within * TIMEOUT_FACTOR)
            frame: dict[str, Any] = json.loads(raw)
            self.frames += 1
            if frame["type"] == "batch":
                self.batches += 1
                assert len(frame["messages"]) > 1, "a batch carries at least two messages"
                self._unread.extend(frame["messages"])
            else:
                self._unread.append(frame)
        message = self._unread.popleft()
        self.messages.append(message)
        return message

    async def next(self, type_: str, within: float = 2.0) -> dict[str, Any]:
        """The next message of this type, skipping presence and heartbeats in between."""
        async with asyncio.timeout(within * TIMEOUT_FACTOR):
            while True:
                message = await self.recv(within)
                if message["type"] == type_:
                    return message
                if message["type"] not in ("presence", "heartbeat"):
                    raise AssertionError(f"expected {type_}, got {message}")

    async def send(self, **message: Any) -> None:
        await self.conn.send(json.dumps(message))

    async def command(self, within: float = 2.0, **message: Any) -> dict[str, Any]:
        """Send a command and return its result or error (deltas received meanwhile are kept)."""
        await self.send(**message)
        async with asyncio.timeout(within * TIMEOUT_FACTOR):
            while True:
                reply = await self.recv(within)
                if reply["type"] in ("result", "error", "pong"):
                    return reply

    def deltas(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "delta"]

    async def close(self) -> None:
        await self.conn.close()


async def quick_users(rt: Runtime, n: int, role: Role = "customer") -> list[User]:
    """Many users with verified emails and access tokens, without paying for n password hashes
    and logins."""
    from seatmap.accounts.auth import issue_access_token

    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            "INSERT INTO users (email, name, password_hash, role, email_verified_at)"
            " SELECT 'u' || g || '-' || $2 || '@example.com', 'User ' || g, 'x', $3, now()"
            " FROM generate_series(1, $1) g RETURNING id, email",
            n, uuid.uuid4().hex[:8], role,
        )  # fmt: skip
    token = [issue_access_token(rt.settings, r["id"], role, email_verified=True)[0] for r in rows]
    return [User(r["id"], r["email"], "", role, t) for r, t in zip(rows, token, strict=True)]


def process_environ(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a seatmap subprocess (worker, web) on this test's databases."""
    assert settings.database_url is not None and settings.redis_url is not None
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEATMAP_")}
    environ.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        SEATMAP_JWT_SECRET=settings.jwt_secret.reveal(),
        SEATMAP_REDIS_PREFIX=settings.redis_prefix,
        SEATMAP_DATA_DIR=str(settings.data_dir),
        SEATMAP_LOG_JSON="0",
        SEATMAP_REDIS_CLUSTER="1" if settings.redis_cluster else "0",
    )
    environ.update(extra)
    return environ
