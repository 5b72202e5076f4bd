"""Expired holds go back on sale by themselves, exactly once, with or without notifications."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime

import httpx
import pytest
from prometheus_client import REGISTRY

from seatmap.accounts.auth import Principal
from seatmap.app import create_app
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.redis_cluster import on_every_node
from tests.support import TIMEOUT_FACTOR, Server, User, Viewer, make_screening, quick_users

# Turns Redis's keyspace notifications off and on (server-wide) and times restocks: alone.
pytestmark = pytest.mark.serial


@pytest.mark.parametrize("notifications", [True, False], ids=["keyspace-events", "sweeper-only"])
async def test_expired_hold_is_freed_once_for_every_viewer(
    rt: Runtime, settings: Settings, notifications: bool
) -> None:
    """A 1 s hold expires: each viewer gets exactly one `free` per seat within 2 s of the deadline."""
    screening = await make_screening(rt, ["SSSSSS"] * 2)
    short = replace(settings, hold_ttl=1, expiry_notifications=notifications)
    if not notifications:
        await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", "")
    try:
        async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
            viewers = [await Viewer.connect(srv, screening) for _ in range(3)]
            for v in viewers:
                await v.next("snapshot")
            (alice,) = await quick_users(rt, 1)
            r = await client.post(
                "/api/holds",
                json={"screening_id": screening, "seats": ["A1", "A2", "B3"]},
                headers=alice.headers,
            )
            deadline = datetime.fromisoformat(r.json()["expires_at"]).timestamp()
            for v in viewers:
                await v.next("delta")
                freed: Counter[str] = Counter()
                async with asyncio.timeout(4 * TIMEOUT_FACTOR):
                    while sum(freed.values()) < 3:
                        delta = await v.next("delta", within=4)
                        freed.update(c["seat"] for c in delta["changes"] if c["state"] == "free")
                        late = time.time() - deadline
                        assert late < 2.0 * TIMEOUT_FACTOR, f"freed {late:.2f}s after the deadline"
                assert freed == Counter({"A1": 1, "A2": 1, "B3": 1})
                with pytest.raises(TimeoutError):
                    await v.next("delta", within=0.7)
                await v.close()
            # The seats are on sale again.
            (bob,) = await quick_users(rt, 1)
            r = await client.post(
                "/api/holds",
                json={"screening_id": screening, "seats": ["A1", "A2", "B3"]},
                headers=bob.headers,
            )
            assert r.status_code == 201
    finally:
        await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", "Ex")


async def test_extended_hold_survives_its_first_deadline(rt: Runtime, settings: Settings) -> None:
    """Extending before the deadline keeps the seats held past it."""
    screening = await make_screening(rt, ["SSSS"])
    short = replace(settings, hold_ttl=1, hold_max=10)
    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        (alice,) = await quick_users(rt, 1)
        token = (
            await client.post(
                "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=alice.headers
            )
        ).json()["token"]
        for _ in range(3):
            await asyncio.sleep(0.6)
            assert (await client.post(f"/api/holds/{token}/extend", headers=alice.headers)).status_code == 200
        assert (await client.get(f"/api/holds/{token}", headers=alice.headers)).status_code == 200
        await asyncio.sleep(1.5)
        r = await client.get(f"/api/holds/{token}", headers=alice.headers)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "hold_expired")


async def test_many_restockers_release_once(rt: Runtime, settings: Settings) -> None:
    """Ten processes' worth of restockers racing on one expired hold publish a single release."""
    screening = await make_screening(rt, ["SSSS"])
    short = replace(settings, hold_ttl=1, sweep_interval=60, expiry_notifications=False)
    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        app_rt = srv_runtime(srv)
        await stop_sweeper()
        viewer = await Viewer.connect(srv, screening)
        await viewer.next("snapshot")
        (alice,) = await quick_users(rt, 1)
        token = (
            await client.post(
                "/api/holds", json={"screening_id": screening, "seats": ["A1", "A2"]}, headers=alice.headers
            )
        ).json()["token"]
        await viewer.next("delta")
        await asyncio.sleep(1.2)
        expiry = app_rt.expiry
        assert expiry is not None
        results = await asyncio.gather(*(expiry.restock(screening, token) for _ in range(10)))
        assert results.count(True) == 1
        delta = await viewer.next("delta")
        assert {c["seat"]: c["state"] for c in delta["changes"]} == {"A1": "free", "A2": "free"}
        with pytest.raises(TimeoutError):
            await viewer.next("delta", within=0.5)
        await viewer.close()


async def test_owner_is_told_the_hold_expired(rt: Runtime, settings: Settings) -> None:
    """Past the deadline the owner's hold answers 409 hold_expired (REST and socket), before and
    after its restock; to anyone else it is still 404, as if it never existed."""
    screening = await make_screening(rt, ["SSSS"])
    short = replace(settings, hold_ttl=1, sweep_interval=60, expiry_notifications=False)
    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        await stop_sweeper()
        alice, bob = await quick_users(rt, 2)
        token = (
            await client.post(
                "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=alice.headers
            )
        ).json()["token"]
        me = await Viewer.connect(srv, screening)
        await me.next("snapshot")
        await me.command(type="auth", token=alice.token)

        async def answers(user: User) -> set[tuple[int, str]]:
            path = f"/api/holds/{token}"
            tried = [
                await client.get(path, headers=user.headers),
                await client.post(f"{path}/extend", headers=user.headers),
                await client.post(f"{path}/seats", json={"add": ["A2"]}, headers=user.headers),
                await client.delete(path, headers=user.headers),
            ]
            return {(r.status_code, r.json()["error"]["code"]) for r in tried}

        async def on_socket() -> set[str]:
            tried = [
                await me.command(type="extend", token=token),
                await me.command(type="hold", token=token, seats=["A2"]),
                await me.command(type="release", token=token),
            ]
            return {reply.get("code", reply["type"]) for reply in tried}

        await asyncio.sleep(1.2)
        assert await answers(alice) == {(409, "hold_expired")}
        assert await on_socket() == {"hold_expired"}
        assert await answers(bob) == {(404, "not_found")}
        expiry = srv_runtime(srv).expiry
        assert expiry is not None
        assert await expiry.restock(screening, token) is True
        assert await answers(alice) == {(409, "hold_expired")}
        assert await on_socket() == {"hold_expired"}
        assert await answers(bob) == {(404, "not_found")}
        await me.close()


async def test_restocks_and_their_lag_are_exported(rt: Runtime, settings: Settings) -> None:
    """A hold driven to expiry moves the restock counter once and the lag histogram by its delay."""
    screening = await make_screening(rt, ["SSSS"])
    short = replace(settings, hold_ttl=1, sweep_interval=60, expiry_notifications=False)

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        await stop_sweeper()
        (alice,) = await quick_users(rt, 1)
        token = (
            await client.post(
                "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=alice.headers
            )
        ).json()["token"]
        before = {
            name: sample(name)
            for name in ("seatmap_restocks_total", "seatmap_restock_lag_seconds_count",
                         "seatmap_restock_lag_seconds_sum")
        }  # fmt: skip
        await asyncio.sleep(1.6)  # restocked 0.6 s after its deadline
        expiry = srv_runtime(srv).expiry
        assert expiry is not None
        assert [await expiry.restock(screening, token) for _ in range(3)] == [True, False, False]
        assert sample("seatmap_restocks_total") - before["seatmap_restocks_total"] == 1
        assert sample("seatmap_restock_lag_seconds_count") - before["seatmap_restock_lag_seconds_count"] == 1
        lag = sample("seatmap_restock_lag_seconds_sum") - before["seatmap_restock_lag_seconds_sum"]
        assert 0.4 < lag < 0.6 + 2 * TIMEOUT_FACTOR


def srv_runtime(srv: Server) -> Runtime:
    assert srv.runtime is not None
    return srv.runtime


async def stop_sweeper() -> None:
    """Cancel the in-process server's expiry sweeper. It is the clock (it wakes at each hold's
    deadline whatever `sweep_interval` says), so a test that drives the restock itself, to race
    it or to see who is told what before it, must take it out of the way.

    Until it has ended: redis-py's RedisCluster (8.2) can lose a cancellation that arrives while
    a command is in flight, and the sweeper then carried on and restocked the test's hold."""
    sweepers = [t for t in asyncio.all_tasks() if t.get_name() == "expiry.sweeper"]
    assert len(sweepers) == 1, sweepers
    async with asyncio.timeout(5 * TIMEOUT_FACTOR):
        while not sweepers[0].done():
            sweepers[0].cancel()
            await asyncio.wait(sweepers, timeout=0.05)


async def test_keyspace_notifications_come_back_after_redis_forgot_them(
    rt: Runtime, settings: Settings
) -> None:
    """Redis restarted with its default config (notifications ''): seatmap turns them on again."""
    original = (await rt.redis.config_get("notify-keyspace-events"))["notify-keyspace-events"]
    try:
        async with running(create_app(settings)) as srv:
            expiry = srv_runtime(srv).expiry
            assert expiry is not None
            expiry.notify_check = 0.2
            await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", "")
            async with asyncio.timeout(3 * TIMEOUT_FACTOR):
                while True:
                    now = (await rt.redis.config_get("notify-keyspace-events"))[
                        "notify-keyspace-events"
                    ] or ""
                    if "E" in now and ("x" in now or "A" in now):
                        break
                    await asyncio.sleep(0.05)
            assert expiry.notifications_problem == ""
    finally:
        await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", original or "Ex")


async def test_readyz_says_when_redis_refuses_to_send_expiry_events(rt: Runtime, settings: Settings) -> None:
    """A Redis that forbids CONFIG (as managed ones do): still ready, and /readyz says why
    expired holds are restocked by the sweeper alone."""
    user, password = f"seatmap-noconfig-{settings.redis_prefix}", "pw-" + settings.redis_prefix
    await on_every_node(rt.redis, "ACL SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-config")
    assert settings.redis_url is not None
    scheme, rest = settings.redis_url.split("://", 1)
    limited = replace(settings, redis_url=f"{scheme}://{user}:{password}@{rest}")
    try:
        async with running(create_app(limited)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
            r = await client.get("/readyz")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == "ready"
            assert body["checks"]["expiry_notifications"].startswith("cannot enable keyspace notifications")
    finally:
        await on_every_node(rt.redis, "ACL DELUSER", user)


@pytest.mark.parametrize("notifications", [True, False], ids=["keyspace-events", "sweeper-only"])
async def test_200_holds_expiring_together_are_each_restocked_once_and_on_time(
    rt: Runtime, settings: Settings, notifications: bool
) -> None:
    """200 one-seat holds of 1 s on 4 screenings: every viewer sees each seat freed exactly once,
    and soon after its own deadline, however long the sweep interval (the sweeper's index is the
    clock, whatever Redis expires)."""
    screenings = [await make_screening(rt, ["S" * 25] * 2, strand_rule=False) for _ in range(4)]
    short = replace(
        settings, hold_ttl=1, sweep_interval=5, expiry_notifications=notifications, holds_per_user=100
    )
    original = (await rt.redis.config_get("notify-keyspace-events"))["notify-keyspace-events"]
    if not notifications:
        await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", "")
    try:
        async with running(create_app(short)) as srv:
            viewers = [(s, await Viewer.connect(srv, s, batch=True)) for s in screenings for _ in range(2)]
            for _, v in viewers:
                await v.next("snapshot")
            who = Principal(user_id=1, role="customer", jti="t", expires_at=int(time.time()) + 60)
            labels = [f"{row}{n}" for row in "AB" for n in range(1, 26)]
            made = await asyncio.gather(
                *(srv_runtime(srv).holds.create(who, s, [seat]) for s in screenings for seat in labels)
            )
            deadline = {
                (h.screening_id, h.seats[0]): datetime.fromisoformat(h.expires_at).timestamp() for h in made
            }
            lags: list[float] = []

            async def watch(screening: int, v: Viewer) -> Counter[str]:
                freed: Counter[str] = Counter()
                async with asyncio.timeout(10 * TIMEOUT_FACTOR):
                    while sum(freed.values()) < len(labels):
                        delta = await v.next("delta", within=5)
                        for change in delta["changes"]:
                            if change["state"] == "free":
                                freed[change["seat"]] += 1
                                lags.append(time.time() - deadline[(screening, change["seat"])])
                with pytest.raises(TimeoutError):
                    await v.next("delta", within=0.3)
                await v.close()
                return freed

            for freed in await asyncio.gather(*(watch(s, v) for s, v in viewers)):
                assert freed == Counter(dict.fromkeys(labels, 1))
            lags.sort()
            assert lags[int(len(lags) * 0.99) - 1] < 0.25 * TIMEOUT_FACTOR, (
                f"p99 {lags[int(len(lags) * 0.99) - 1]:.3f}s"
            )
    finally:
        await on_every_node(rt.redis, "CONFIG SET", "notify-keyspace-events", original or "Ex")
