"""Accounts over HTTP: registration, verification codes, login, tokens, rate limits, admin users."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pytest

from seatmap.app import create_app
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.support import PASSWORD, User, create_user, latest_code, logged_in, login


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def register(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/register", json={"email": email, "password": password, "name": "Ada"})


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# registration


async def test_register_returns_the_new_unverified_customer(client: httpx.AsyncClient) -> None:
    """Registering answers 201 with the account: a customer whose email is not verified yet."""
    email = new_email()
    response = await register(client, email)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "email": email,
        "name": "Ada",
        "role": "customer",
        "email_verified": False,
    }


async def test_duplicate_email_is_409_whatever_the_case(client: httpx.AsyncClient, rt: Runtime) -> None:
    """A second account with the same email, in other letter case, is refused with 409 email_taken."""
    email = new_email()
    assert (await register(client, email)).status_code == 201
    response = await register(client, email.upper())
    assert response.status_code == 409
    assert error(response)["code"] == "email_taken"
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE lower(email) = lower($1)", email) == 1
        assert (
            await conn.fetchval("SELECT count(*) FROM mail_outbox WHERE lower(recipient) = lower($1)", email)
            == 1
        )


BAD_REGISTRATIONS: list[tuple[dict[str, Any], str]] = [
    ({"email": "not-an-email", "password": PASSWORD, "name": "Ada"}, "$.email"),
    ({"email": "a b@example.com", "password": PASSWORD, "name": "Ada"}, "$.email"),
    ({"email": "ada@example", "password": PASSWORD, "name": "Ada"}, "$.email"),
    ({"email": "ada@example.com", "password": "short", "name": "Ada"}, "$.password"),
    ({"email": "ada@example.com", "password": PASSWORD, "name": ""}, "$.name"),
    ({"email": 42, "password": PASSWORD, "name": "Ada"}, "$.email"),
]


async def test_register_rejects_bad_input_naming_the_field(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Bad email syntax, a short password or an empty name is a 422 naming the field; nothing is stored."""
    for body, path in BAD_REGISTRATIONS:
        response = await client.post("/api/auth/register", json=body)
        assert response.status_code == 422, (body, response.text)
        assert error(response)["path"] == path, body
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users") == 0
        assert await conn.fetchval("SELECT count(*) FROM mail_outbox") == 0


async def test_register_without_a_name_is_422(client: httpx.AsyncClient) -> None:
    """Leaving out a required field is a 422 that says which one."""
    response = await client.post("/api/auth/register", json={"email": new_email(), "password": PASSWORD})
    assert response.status_code == 422
    assert "`name`" in error(response)["message"]


# login and tokens


async def test_login_returns_a_bearer_pair_that_opens_me(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Login answers an OAuth2-style token pair; the access token opens /api/me."""
    user = await create_user(rt)
    response = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == rt.settings.access_token_ttl
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "id": user.id,
        "email": user.email,
        "name": "Test customer",
        "role": "customer",
        "email_verified": True,
    }


async def test_wrong_password_and_unknown_email_get_the_same_401(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A wrong password and an unknown email both get 401 invalid_credentials with the same body."""
    user = await create_user(rt)
    wrong = await client.post("/api/auth/login", json={"email": user.email, "password": "wrong password"})
    unknown = await client.post("/api/auth/login", json={"email": new_email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert error(wrong)["code"] == "invalid_credentials"


async def test_unknown_email_costs_as_much_time_as_a_wrong_password(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Timing a login does not tell whether the email has an account: both failures do the hashing."""
    user = await create_user(rt)

    async def timed(email: str) -> float:
        started = time.perf_counter()
        response = await client.post("/api/auth/login", json={"email": email, "password": "wrong password"})
        assert response.status_code == 401
        return time.perf_counter() - started

    # The fastest of several tries: a busy machine only ever adds time, never takes it away.
    known = min([await timed(user.email) for _ in range(4)])
    unknown = min([await timed(new_email()) for _ in range(4)])
    assert unknown > known * 0.5, (known, unknown)


def forged(settings: Settings, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "1", "role": "admin", "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    return {**claims, **changes}


async def test_bad_access_tokens_get_401(client: httpx.AsyncClient, settings: Settings) -> None:
    """An expired, garbled, unsigned (alg none) or foreign-signed token on /api/me is 401."""
    secret = settings.jwt_secret.reveal()
    headers = {
        "expired": "Bearer "
        + jwt.encode(forged(settings, exp=int(time.time()) - 5), secret, algorithm="HS256"),
        "garbage": "Bearer not.a.token",
        "alg-none": "Bearer " + jwt.encode(forged(settings), None, algorithm="none"),
        "wrong-secret": "Bearer "
        + jwt.encode(forged(settings), "another-secret-" + "y" * 40, algorithm="HS256"),
        "wrong-scheme": "Basic " + jwt.encode(forged(settings), secret, algorithm="HS256"),
        "unknown-role": "Bearer " + jwt.encode(forged(settings, role="root"), secret, algorithm="HS256"),
    }
    for kind, header in headers.items():
        response = await client.get("/api/me", headers={"Authorization": header})
        assert response.status_code == 401, kind
        assert error(response)["code"] == "invalid_token", kind
    # The same claims, properly signed, are accepted: the refusals above are about the token.
    good = jwt.encode(forged(settings, role="customer"), secret, algorithm="HS256")
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {good}"})
    assert error(response)["message"] == "The account of this token no longer exists."


async def test_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    """/api/me without any token says 401 unauthorized."""
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert error(response)["code"] == "unauthorized"


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_a_reused_token_revokes_the_login(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A refresh token works once; presenting it again is refused and kills its successor too."""
    user = await create_user(rt)
    first = (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).json()
    rotated = await refresh(client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert me.status_code == 200

    reused = await refresh(client, first["refresh_token"])
    assert reused.status_code == 401
    assert error(reused)["code"] == "invalid_token"
    assert (await refresh(client, second["refresh_token"])).status_code == 401


async def test_another_login_survives_a_reuse(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Revoking a stolen login's family leaves the user's other logins (other devices) working."""
    user = await create_user(rt)
    phone = (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).json()
    laptop = (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).json()
    assert (await refresh(client, phone["refresh_token"])).status_code == 200
    assert (await refresh(client, phone["refresh_token"])).status_code == 401
    assert (await refresh(client, laptop["refresh_token"])).status_code == 200


async def test_refresh_rejects_unknown_and_expired_tokens(client: httpx.AsyncClient, rt: Runtime) -> None:
    """A made-up refresh token, an expired one, or none at all is 401."""
    user = await create_user(rt)
    tokens = (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).json()
    assert (await refresh(client, "made-up")).status_code == 401
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    async with httpx.AsyncClient(base_url=str(client.base_url)) as fresh:
        response = await fresh.post("/api/auth/refresh")
    assert response.status_code == 401


async def test_refresh_gives_the_role_the_database_has_now(
    client: httpx.AsyncClient, rt: Runtime, settings: Settings
) -> None:
    """A customer promoted to staff gets a staff access token at the next refresh."""
    user = await create_user(rt)
    tokens = (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).json()
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE users SET role = 'staff' WHERE id = $1", user.id)
    new = (await refresh(client, tokens["refresh_token"])).json()
    claims = jwt.decode(new["access_token"], settings.jwt_secret.reveal(), algorithms=["HS256"])
    assert claims["role"] == "staff"
    assert claims["sub"] == str(user.id)


async def test_logout_revokes_the_access_and_the_refresh_token(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """After logout the access token gets 401 and the refresh token no longer refreshes."""
    user = await create_user(rt)
    tokens = (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = await client.post(
        "/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert response.status_code == 204
    me = await client.get("/api/me", headers=headers)
    assert me.status_code == 401
    assert error(me)["code"] == "invalid_token"
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


async def test_a_logout_reaches_the_other_processes_within_a_second(
    client: httpx.AsyncClient, rt: Runtime, settings: Settings
) -> None:
    """Another process, which trusted the token a moment ago, refuses it about a second after logout."""
    user = await create_user(rt)
    tokens = (await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with running(create_app(settings)) as other, httpx.AsyncClient(base_url=other.http) as there:
        assert (await there.get("/api/me", headers=headers)).status_code == 200
        out = await client.post(
            "/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
        )
        assert out.status_code == 204
        assert (await client.get("/api/me", headers=headers)).status_code == 401  # this process: at once
        logged_out = time.monotonic()
        while (await there.get("/api/me", headers=headers)).status_code == 200:
            assert time.monotonic() - logged_out < 1.5, "the other process still accepts the token"
            await asyncio.sleep(0.05)


async def test_logout_needs_a_login(client: httpx.AsyncClient) -> None:
    """Logging out without a token is 401."""
    assert (await client.post("/api/auth/logout")).status_code == 401


async def test_cookie_login_works_without_a_header(server: Any, rt: Runtime) -> None:
    """A browser that only keeps the login cookies can call /api/me, refresh, and log out."""
    user = await create_user(rt)
    async with httpx.AsyncClient(base_url=server.http) as browser:
        assert (
            await browser.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        ).is_success
        access = browser.cookies["sm_access"]
        me = await browser.get("/api/me")
        assert me.status_code == 200
        assert me.json()["id"] == user.id

        refreshed = await browser.post("/api/auth/refresh")
        assert refreshed.status_code == 200, refreshed.text
        assert browser.cookies["sm_access"] == refreshed.json()["access_token"]

        assert (await browser.post("/api/auth/logout")).status_code == 204
        assert "sm_access" not in browser.cookies
        assert (await browser.get("/api/me")).status_code == 401
        # The refresh cookie's login is revoked too, not just forgotten by this browser.
        assert (await refresh(browser, refreshed.json()["refresh_token"])).status_code == 401
    async with httpx.AsyncClient(base_url=server.http) as other:
        assert (await other.get("/api/me", headers={"Authorization": f"Bearer {access}"})).status_code == 200


# login rate limits


def assert_rate_limited(response: httpx.Response, window: int) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= window
    assert error(response) == {
        "code": "rate_limited",
        "message": f"Too many attempts; try again in {retry_after} seconds.",
        "retry_after": retry_after,
    }


async def test_failed_logins_are_limited_per_account(client: httpx.AsyncClient, rt: Runtime) -> None:
    """After the allowed failures even the right password gets 429 with Retry-After; others still log in."""
    user = await create_user(rt)
    for _ in range(rt.settings.login_max_attempts):
        wrong = await client.post("/api/auth/login", json={"email": user.email, "password": "wrong password"})
        assert wrong.status_code == 401
    blocked = await client.post("/api/auth/login", json={"email": user.email.upper(), "password": PASSWORD})
    assert_rate_limited(blocked, rt.settings.login_window)
    await login(client, await create_user(rt))


async def test_a_successful_login_clears_the_account_count(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Failures before a good login do not count against the next ones."""
    user = await create_user(rt)
    for _ in range(2):
        for _ in range(rt.settings.login_max_attempts - 1):
            wrong = await client.post(
                "/api/auth/login", json={"email": user.email, "password": "wrong password"}
            )
            assert wrong.status_code == 401
        await login(client, user)


async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Guesses sent all at once are counted atomically: only the allowed number is even tried."""
    user = await create_user(rt)
    attempts = rt.settings.login_max_attempts * 2
    responses = await asyncio.gather(
        *(
            client.post("/api/auth/login", json={"email": user.email, "password": f"guess {i}"})
            for i in range(attempts)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(401) == rt.settings.login_max_attempts
    assert statuses.count(429) == attempts - rt.settings.login_max_attempts


async def test_failed_logins_are_limited_per_ip(settings: Settings, rt: Runtime) -> None:
    """Failures spread over many emails from one IP hit the per-IP limit, even for a good login."""
    limited = replace(settings, login_ip_max_attempts=3)
    user = await create_user(rt)
    async with running(create_app(limited)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        for _ in range(3):
            wrong = await client.post(
                "/api/auth/login", json={"email": new_email(), "password": "wrong password"}
            )
            assert wrong.status_code == 401
        blocked = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        assert_rate_limited(blocked, limited.login_window)


async def test_good_logins_do_not_use_up_the_ip_limit(settings: Settings, rt: Runtime) -> None:
    """Many people logging in fine from one address (an office, a NAT) are not blocked."""
    limited = replace(settings, login_ip_max_attempts=2)
    user = await create_user(rt)
    async with running(create_app(limited)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        for _ in range(4):
            await login(client, user)


# email verification


async def verify(client: httpx.AsyncClient, email: str, code: str) -> httpx.Response:
    return await client.post("/api/auth/verify", json={"email": email, "code": code})


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_the_mailed_code_verifies_the_email_once(client: httpx.AsyncClient, rt: Runtime) -> None:
    """The code from the registration mail verifies the email; using it again is 400 invalid_code."""
    email = new_email()
    await register(client, email)
    code = await latest_code(rt, email)
    response = await verify(client, email, code)
    assert response.status_code == 200, response.text
    assert response.json()["email_verified"] is True
    user = await login(client, User(response.json()["id"], email, PASSWORD, "customer"))
    assert (await client.get("/api/me", headers=user.headers)).json()["email_verified"] is True

    again = await verify(client, email, code)
    assert again.status_code == 400
    assert error(again)["code"] == "invalid_code"
    assert error(again)["reason"] == "used"


async def test_five_wrong_codes_kill_the_code(client: httpx.AsyncClient, rt: Runtime) -> None:
    """After five wrong guesses even the right code is refused until a new one is asked for."""
    email = new_email()
    await register(client, email)
    code = await latest_code(rt, email)
    for left in range(4, -1, -1):
        wrong = await verify(client, email, other_code(code))
        assert wrong.status_code == 400
        assert error(wrong)["reason"] == "wrong"
        assert f"{left} attempt" in error(wrong)["message"]
    right = await verify(client, email, code)
    assert right.status_code == 400
    assert error(right)["reason"] == "attempts"


async def test_an_expired_code_is_refused(client: httpx.AsyncClient, rt: Runtime) -> None:
    """A code past its lifetime gets 400 invalid_code (expired) and the email stays unverified."""
    email = new_email()
    await register(client, email)
    code = await latest_code(rt, email)
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE email_verifications SET expires_at = now() - interval '1 second'")
    response = await verify(client, email, code)
    assert response.status_code == 400
    assert error(response) == {
        "code": "invalid_code",
        "message": "This code has expired; ask for a new one.",
        "reason": "expired",
    }
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT email_verified_at FROM users WHERE email = $1", email) is None


async def test_codes_live_as_long_as_the_settings_say(settings: Settings, rt: Runtime) -> None:
    """With a one-second code lifetime, a code used two seconds later has expired."""
    short = replace(settings, verification_code_ttl=1)
    email = new_email()
    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        await register(client, email)
        code = await latest_code(rt, email)
        await asyncio.sleep(1.2)
        response = await verify(client, email, code)
    assert response.status_code == 400
    assert error(response)["reason"] == "expired"


async def test_a_malformed_code_is_422(client: httpx.AsyncClient) -> None:
    """A code that is not six digits is a 422 naming $.code."""
    for code in ("12345", "1234567", "abcdef", ""):
        response = await verify(client, new_email(), code)
        assert response.status_code == 422, code
        assert error(response)["path"] == "$.code"


async def test_a_code_for_an_unknown_email_is_refused(client: httpx.AsyncClient) -> None:
    """Verifying an email nobody registered is 400 invalid_code."""
    response = await verify(client, new_email(), "123456")
    assert response.status_code == 400
    assert error(response)["code"] == "invalid_code"


async def test_resend_replaces_the_code_once_a_minute(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Asking for a new code mails one and retires the old; asking again at once is 429."""
    email = new_email()
    await register(client, email)
    old = await latest_code(rt, email)
    response = await client.post("/api/auth/verify/resend", json={"email": email})
    assert response.status_code == 202
    new = await latest_code(rt, email)
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mail_outbox WHERE recipient = $1", email) == 2
    if new != old:  # one chance in a million they are equal
        assert error(await verify(client, email, old))["reason"] == "wrong"
    assert (await verify(client, email, new)).status_code == 200

    again = await client.post("/api/auth/verify/resend", json={"email": email})
    assert_rate_limited(again, 60)


async def test_resend_does_not_reveal_accounts(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Unknown and already verified emails get the same 202 answer, and no mail is sent."""
    verified = await create_user(rt)
    unknown = await client.post("/api/auth/verify/resend", json={"email": new_email()})
    known = await client.post("/api/auth/verify/resend", json={"email": verified.email})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mail_outbox") == 0


# admin users

ADMIN_ROUTES = [
    (
        "POST",
        "/api/admin/users",
        {"email": "x@example.com", "password": PASSWORD, "name": "X", "role": "staff"},
    ),
    ("GET", "/api/admin/users", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_refuse_anonymous_customers_and_staff(
    client: httpx.AsyncClient, rt: Runtime, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Admin user routes answer 401 without a login and 403 to customers and staff; nothing is created."""
    anonymous = await client.request(method, path, json=body)
    assert anonymous.status_code == 401
    for role in ("customer", "staff"):
        user = await logged_in(rt, client, role)
        response = await client.request(method, path, json=body, headers=user.headers)
        assert response.status_code == 403, (role, response.text)
        assert error(response)["code"] == "forbidden"
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = 'x@example.com'") == 0


async def test_admin_creates_a_staff_account_that_can_log_in(client: httpx.AsyncClient, rt: Runtime) -> None:
    """An admin makes a staff account; its owner logs in and /api/me says staff."""
    admin = await logged_in(rt, client, "admin")
    email = new_email()
    created = await client.post(
        "/api/admin/users",
        json={"email": email, "password": PASSWORD, "name": "Door", "role": "staff"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "staff"
    assert created.json()["email_verified"] is True
    staff = await login(client, User(created.json()["id"], email, PASSWORD, "staff"))
    me = await client.get("/api/me", headers=staff.headers)
    assert me.json()["role"] == "staff"
    duplicate = await client.post(
        "/api/admin/users",
        json={"email": email, "password": PASSWORD, "name": "Door", "role": "staff"},
        headers=admin.headers,
    )
    assert duplicate.status_code == 409


async def test_admin_lists_users_page_by_page(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Following next_cursor visits every account once, in order; ?role= filters."""
    admin = await logged_in(rt, client, "admin")
    made = [await create_user(rt, role) for role in ("customer", "staff", "customer", "staff", "customer")]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while pages < 10:
        pages += 1
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/admin/users", params=params, headers=admin.headers)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert seen == sorted([admin.id, *(u.id for u in made)])
    assert pages == 3

    staff = (await client.get("/api/admin/users", params={"role": "staff"}, headers=admin.headers)).json()
    assert [item["id"] for item in staff["items"]] == [u.id for u in made if u.role == "staff"]
    assert staff.get("next_cursor") is None


async def test_admin_list_rejects_bad_query(client: httpx.AsyncClient, rt: Runtime) -> None:
    """An unknown role, a forged cursor or a silly limit is a 422, not a 500."""
    admin = await logged_in(rt, client, "admin")
    for params in ({"role": "root"}, {"cursor": "!!"}, {"cursor": "YWJj"}, {"limit": "0"}, {"limit": "x"}):
        response = await client.get("/api/admin/users", params=params, headers=admin.headers)
        assert response.status_code == 422, (params, response.text)
