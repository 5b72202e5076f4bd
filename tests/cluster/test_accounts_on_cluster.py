"""Accounts on a Redis Cluster: login limits, logout's deny-list, and revocations across processes."""

from __future__ import annotations

import httpx
import pytest

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.redis_cluster import LocalCluster
from tests.support import PASSWORD, create_user, login, quick_users
from tests.test_multiprocess import web_processes

# Six Redis servers of its own, primaries killed and slots moved: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_login_limits_and_logout_work_on_a_cluster(
    rt: Runtime, client: httpx.AsyncClient, cluster: LocalCluster
) -> None:
    """Failed logins are counted to a 429 (the counters live on their own slots), and a logged-out
    token is refused (the deny-list key)."""
    user = await create_user(rt)
    for _ in range(rt.settings.login_max_attempts):
        wrong = await client.post("/api/auth/login", json={"email": user.email, "password": "wrong password"})
        assert wrong.status_code == 401
    blocked = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    other = await login(client, await create_user(rt))
    assert (await client.get("/api/me", headers=other.headers)).status_code == 200
    assert (await client.post("/api/auth/logout", headers=other.headers)).status_code in (200, 204)
    assert (await client.get("/api/me", headers=other.headers)).status_code == 401


async def test_a_disabled_users_token_is_refused_on_both_processes_of_a_cluster(
    rt: Runtime, settings: Settings
) -> None:
    """The revocation is a sharded channel on a cluster: SPUBLISH reaches both processes, whose
    acknowledgements the admin's request waits for, so the next request on either is a 401."""
    admin, cashier = await quick_users(rt, 1, "admin") + await quick_users(rt, 1, "staff")
    async with (
        web_processes(settings, 2, SEATMAP_REDIS_CLUSTER="1") as servers,
        httpx.AsyncClient() as client,
    ):
        for srv in servers:
            assert (await client.get(f"{srv.http}/api/me", headers=cashier.headers)).status_code == 200
        r = await client.patch(
            f"{servers[0].http}/api/admin/users/{cashier.id}", json={"disabled": True}, headers=admin.headers
        )
        assert r.status_code == 200, r.text
        for srv in reversed(servers):
            assert (await client.get(f"{srv.http}/api/me", headers=cashier.headers)).status_code == 401
