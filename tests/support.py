"""Plain helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Final

import httpx

from seatmap import accounts
from seatmap.auth import Role
from seatmap.runtime import Runtime

# Slow machines (or PYTHONASYNCIODEBUG=1) scale every timeout by this factor.
TIMEOUT_FACTOR: Final = float(os.environ.get("SEATMAP_TESTS_TIMEOUT_FACTOR", "1"))
PASSWORD: Final = "correct horse battery"


@dataclass(frozen=True)
class Server:
    http: str
    ws: str


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


async def create_user(rt: Runtime, role: Role = "customer", *, email: str | None = None) -> User:
    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    async with rt.pool.acquire() as conn:
        user_id = await accounts.create_user(
            conn, email=email, password=PASSWORD, name=f"Test {role}", role=role, verified=True
        )
    return User(user_id, email, PASSWORD, role)


async def login(client: httpx.AsyncClient, user: User) -> User:
    response = await client.post("/api/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    return User(user.id, user.email, user.password, user.role, response.json()["access_token"])


async def logged_in(rt: Runtime, client: httpx.AsyncClient, role: Role = "customer") -> User:
    return await login(client, await create_user(rt, role))
