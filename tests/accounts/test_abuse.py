"""Accounts under attack: look-alike addresses, a NAT full of kiosks, registration spam,
unverified buyers and users whose role was taken away (issue 12, "Abuse")."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest

from seatmap.accounts import emails
from seatmap.app import create_app
from seatmap.errors import InvalidInput
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.support import PASSWORD, Server, Viewer, create_user, latest_code, logged_in, login, make_screening


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def attempt(client: httpx.AsyncClient, email: str, password: str = "wrong password") -> int:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    return response.status_code


# one form of an address


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Victim@Example.COM", "victim@example.com"),
        ("  victim@example.com\t", "victim@example.com"),
        ("vİctim@example.com", "vi\u0307ctim@example.com"),  # not the `victim` PostgreSQL folds it to
        ("victim\uff20example.com", "victim@example.com"),  # a full-width at sign
        ("\u212aate@example.com", "kate@example.com"),  # the Kelvin sign
        ("STRASSE@example.com", "strasse@example.com"),
        ("Straße@example.com", "straße@example.com"),  # lower(), not casefold(): ß stays
        ("e\u0301@example.com", "\u00e9@example.com"),  # composed
    ],
)
def test_an_address_has_one_normal_form(raw: str, normal: str) -> None:
    """Every spelling of an address that means the same mailbox keys the same account, and
    normalizing twice changes nothing."""
    assert emails.normalize(raw) == normal
    assert emails.normalize(normal) == normal


@pytest.mark.parametrize("raw", ["", "a", "a@b", "a b@example.com", "a@@example.com", "a@example..com"])
def test_a_non_address_is_refused_naming_the_field(raw: str) -> None:
    """Something that is not an address is a 422 on `$.email`."""
    with pytest.raises(InvalidInput) as caught:
        emails.check(raw)
    assert caught.value.details == {"path": "$.email"}


async def test_a_look_alike_address_does_not_get_past_the_account_limit(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """After the allowed failures, no spelling of the address logs in to the account: not the
    `İ` one PostgreSQL folds to `i`, not the upper-case one."""
    user = await create_user(rt, email=f"victim-iii-{uuid.uuid4().hex[:6]}@example.com")
    for _ in range(rt.settings.login_max_attempts):
        assert await attempt(client, user.email) == 401
    local, _, domain = user.email.partition("@")
    spellings = [user.email, user.email.upper()] + [
        local[:i] + "İ" + local[i + 1 :] + "@" + domain for i, c in enumerate(local) if c == "i"
    ]
    statuses = {spelling: await attempt(client, spelling, PASSWORD) for spelling in spellings}
    assert statuses[user.email] == 429
    assert statuses[user.email.upper()] == 429
    assert all(status in (401, 429) for status in statuses.values()), statuses
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM refresh_tokens WHERE user_id = $1", user.id) == 0


async def test_a_look_alike_address_cannot_register_a_second_account(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Registering `VICTIM@…` next to `victim@…` is 409 email_taken; the account keeps its address."""
    user = await create_user(rt)
    taken = await client.post(
        "/api/auth/register", json={"email": user.email.upper(), "password": PASSWORD, "name": "Eve"}
    )
    assert taken.status_code == 409
    assert error(taken)["code"] == "email_taken"
    assert (await login(client, user)).token


async def test_unknown_and_known_addresses_are_limited_alike(client: httpx.AsyncClient, rt: Runtime) -> None:
    """A stranger's address and an account's answer the same sequence of 401s and then 429, so the
    limit does not tell which addresses have accounts."""
    user = await create_user(rt)
    stranger = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    known = [await attempt(client, user.email) for _ in range(rt.settings.login_max_attempts + 1)]
    unknown = [await attempt(client, stranger) for _ in range(rt.settings.login_max_attempts + 1)]
    assert known == unknown == [401] * rt.settings.login_max_attempts + [429]
    assert await attempt(client, stranger.upper()) == 429


# a NAT full of kiosks


async def test_a_known_device_keeps_logging_in_while_its_address_is_limited(
    settings: Settings, rt: Runtime
) -> None:
    """Thirty wrong passwords behind a cinema's NAT lock out new devices, not the kiosk that
    logged in before: it still logs in to its own account, not to another."""
    limited = replace(settings, login_ip_max_attempts=3)
    cashier, other = await create_user(rt, "staff"), await create_user(rt, "staff")
    async with (
        running(create_app(limited)) as srv,
        httpx.AsyncClient(base_url=srv.http) as kiosk,
        httpx.AsyncClient(base_url=srv.http) as attacker,
        httpx.AsyncClient(base_url=srv.http) as newcomer,
    ):
        first = await kiosk.post("/api/auth/login", json={"email": cashier.email, "password": PASSWORD})
        assert first.status_code == 200
        cookie = next(c for c in first.headers.get_list("set-cookie") if c.startswith("sm_device="))
        assert "httponly" in cookie.lower() and "path=/api/auth" in cookie.lower()
        assert "samesite=strict" in cookie.lower()
        for _ in range(4):
            await attempt(attacker, f"guess-{uuid.uuid4().hex[:6]}@example.com")
        assert await attempt(newcomer, cashier.email, PASSWORD) == 429
        for _ in range(3):  # a shift's logins, each renewing the cookie
            assert await attempt(kiosk, cashier.email, PASSWORD) == 200
        assert await attempt(kiosk, other.email, PASSWORD) == 429  # the cookie names the cashier only

        forged = kiosk.cookies["sm_device"].replace(str(cashier.id) + ".", str(other.id) + ".", 1)
        newcomer.cookies.set("sm_device", forged, path="/api/auth")
        assert await attempt(newcomer, other.email, PASSWORD) == 429


async def test_a_known_device_has_its_own_failure_limit(settings: Settings, rt: Runtime) -> None:
    """Wrong passwords from a known device are limited per device: it gets 429, while the account
    and the address stay open to everyone else."""
    limited = replace(settings, login_device_max_attempts=2)
    user = await create_user(rt)
    async with (
        running(create_app(limited)) as srv,
        httpx.AsyncClient(base_url=srv.http) as device,
        httpx.AsyncClient(base_url=srv.http) as elsewhere,
    ):
        await login(device, user)
        assert [await attempt(device, user.email) for _ in range(3)] == [401, 401, 429]
        assert await attempt(device, user.email, PASSWORD) == 429
        assert await attempt(elsewhere, user.email, PASSWORD) == 200


# registration spam


async def test_registrations_are_limited_per_address(settings: Settings, rt: Runtime) -> None:
    """A script registering account after account from one address gets 429 with Retry-After;
    no account is made past the limit."""
    limited = replace(settings, register_max_per_address=3, register_window=600)
    async with running(create_app(limited)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        made = [
            await client.post(
                "/api/auth/register",
                json={
                    "email": f"spam-{i}-{uuid.uuid4().hex[:6]}@example.com",
                    "password": PASSWORD,
                    "name": "S",
                },
            )
            for i in range(5)
        ]
    assert [r.status_code for r in made] == [201, 201, 201, 429, 429]
    assert error(made[3])["code"] == "rate_limited"
    assert 0 < int(made[3].headers["Retry-After"]) <= 600
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email LIKE 'spam-%'") == 3


# email verification


async def unverified(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """Register through the API and log in without entering the code: the address and headers."""
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    made = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"})
    assert made.status_code == 201, made.text
    tokens = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return email, {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def assert_unverified(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert error(response)["code"] == "email_unverified"
    assert "/api/auth/verify" in error(response)["message"]


async def test_an_unverified_account_cannot_hold_or_order(
    client: httpx.AsyncClient, server: Server, rt: Runtime
) -> None:
    """Without the mailed code a new account gets 403 email_unverified saying how to verify, on
    REST and on the socket, and nobody sees a seat change; with the code the same login holds."""
    screening = await make_screening(rt)
    email, headers = await unverified(client)
    watcher = await Viewer.connect(server, screening)
    await watcher.next("snapshot")

    assert_unverified(
        await client.post("/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=headers)
    )
    order = await client.post(
        "/api/orders", json={"hold_token": f"{screening}.x"}, headers={**headers, "Idempotency-Key": "k1"}
    )
    assert_unverified(order)
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    await me.command(type="auth", token=headers["Authorization"].removeprefix("Bearer "))
    refused = await me.command(type="hold", ref="h", seats=["A1"])
    assert refused["type"] == "error" and refused["code"] == "email_unverified", refused
    assert refused["ref"] == "h"
    with pytest.raises(TimeoutError):
        await watcher.next("delta", within=0.3)

    code = await latest_code(rt, email)
    assert (await client.post("/api/auth/verify", json={"email": email, "code": code})).status_code == 200
    held = await client.post("/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=headers)
    assert held.status_code == 201, held.text
    assert (await watcher.next("delta"))["changes"] == [{"seat": "A1", "state": "held"}]
    await me.close()
    await watcher.close()


async def test_the_verification_gate_can_be_turned_off(settings: Settings, rt: Runtime) -> None:
    """With SEATMAP_REQUIRE_VERIFIED_EMAIL off an unverified account holds as before."""
    screening = await make_screening(rt)
    open_settings = replace(settings, require_verified_email=False)
    async with running(create_app(open_settings)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        _, headers = await unverified(client)
        held = await client.post(
            "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=headers
        )
        assert held.status_code == 201, held.text


async def test_a_token_issued_after_verification_needs_no_second_look(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A verified account's token says so; it holds even before anything else is read."""
    screening = await make_screening(rt)
    alice = await logged_in(rt, client)
    held = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["B1"]}, headers=alice.headers
    )
    assert held.status_code == 201, held.text


# a role taken away


async def test_a_demoted_admin_loses_the_role_at_once_everywhere(
    client: httpx.AsyncClient, rt: Runtime, settings: Settings
) -> None:
    """When an admin demotes another admin, that admin's access and refresh tokens stop working
    at once here and within a second on every other process; logging in again gives the new role."""
    boss = await logged_in(rt, client, "admin")
    target = await create_user(rt, "admin")
    tokens = (await client.post("/api/auth/login", json={"email": target.email, "password": PASSWORD})).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with running(create_app(settings)) as other, httpx.AsyncClient(base_url=other.http) as there:
        assert (await there.get("/api/admin/users", headers=headers)).status_code == 200
        demoted = await client.patch(
            f"/api/admin/users/{target.id}", json={"role": "customer"}, headers=boss.headers
        )
        assert demoted.status_code == 200, demoted.text
        assert demoted.json()["role"] == "customer"
        changed = time.monotonic()
        refused = await client.get("/api/admin/users", headers=headers)
        assert refused.status_code == 401
        assert error(refused)["code"] == "invalid_token"
        again = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert again.status_code == 401
        while (await there.get("/api/admin/users", headers=headers)).status_code == 200:
            assert time.monotonic() - changed < 1.5, "the other process still takes the admin token"
            await asyncio.sleep(0.05)
        assert (await there.get("/api/me", headers=headers)).status_code == 401

    relogged = await login(client, target)
    me = await client.get("/api/me", headers=relogged.headers)
    assert me.status_code == 200 and me.json()["role"] == "customer"
    assert (await client.get("/api/admin/users", headers=relogged.headers)).status_code == 403
    assert (await client.get("/api/admin/users", headers=boss.headers)).status_code == 200


async def test_only_an_admin_changes_roles(client: httpx.AsyncClient, rt: Runtime) -> None:
    """A staff member cannot promote themself (403); an unknown account is 404; a bad role is 422."""
    staff = await logged_in(rt, client, "staff")
    boss = await logged_in(rt, client, "admin")
    promote = await client.patch(
        f"/api/admin/users/{staff.id}", json={"role": "admin"}, headers=staff.headers
    )
    assert promote.status_code == 403
    missing = await client.patch("/api/admin/users/987654321", json={"role": "staff"}, headers=boss.headers)
    assert missing.status_code == 404
    bad = await client.patch(f"/api/admin/users/{staff.id}", json={"role": "owner"}, headers=boss.headers)
    assert bad.status_code == 422
    assert (await client.get("/api/me", headers=staff.headers)).json()["role"] == "staff"
