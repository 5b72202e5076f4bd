"""Accounts: registration, email verification, login, token refresh and logout.

The routes here are the whole account lifecycle of the REST API (mounted under `/api`). The
parts with rules of their own live beside it: `passwords.py` (scrypt), `verification.py`
(one-time codes), `sessions.py` (rotating refresh tokens), `ratelimit.py` (login limits) and
`mail.py` (the outbox the codes travel through). What admins do to accounts is `staff.py`.

Login answers the same 401 `invalid_credentials`, after the same scrypt work, whether the
email is unknown or the password wrong, so it tells nobody which emails have accounts. Every
route keys accounts by `emails.normalize` (see there why). Failed logins are counted per
account id (per normalized address when there is no such account: the same limit, the same
429, so the limit tells nothing either), per client address, and for a device that logged in
before, per device instead of both (`devices.py`). Registrations are limited per address.
A disabled account is told so (403 `account_disabled`) only after its password was verified.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final, Literal, TypeVar

import msgspec
from asyncpg import Record
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import devices, emails, passwords, ratelimit, sessions, verification
from seatmap.accounts.auth import (
    REFRESH_COOKIE,
    ROLES,
    Role,
    clear_session_cookies,
    issue_access_token,
    require,
    revoke_access_token,
    set_session_cookies,
)
from seatmap.api import (
    documented,
    read_body,
    respond,
)
from seatmap.db import AnyConnection
from seatmap.errors import (
    AccountDisabled,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
)
from seatmap.runtime import Runtime, runtime
from seatmap.settings import Settings

T = TypeVar("T")

MIN_PASSWORD: Final = 8

Email = Annotated[str, Meta(max_length=254)]
Password = Annotated[str, Meta(max_length=1024)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]


class User(msgspec.Struct, kw_only=True):
    """An account as every endpoint shows it."""

    id: int
    email: str
    name: str
    role: Role
    email_verified: bool


class Me(User, kw_only=True, omit_defaults=True):
    """The logged-in user; an organizer's also with the cinemas its token may manage."""

    cinema_ids: list[int] = []


# What `check_email` accepts (surrounding white space is stripped), told in the schema only:
# the code refuses with its own message. Python's `\s` spelt out, as JSON Schema's differs.
_WS: Final = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NewEmail = Annotated[
    str,
    Meta(
        max_length=254,
        extra_json_schema={
            "pattern": f"^[{_WS}]*[^@\\x00{_WS}]{{1,64}}@[^@\\x00{_WS}.]+(?:\\.[^@\\x00{_WS}.]+)+[{_WS}]*$"
        },
    ),
]


# Likewise `MIN_PASSWORD`, which `create_user` checks with its own message.
NewPassword = Annotated[str, Meta(max_length=1024, extra_json_schema={"minLength": MIN_PASSWORD})]


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: NewEmail
    password: NewPassword
    name: Name


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password


class CodeCheck(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Email
    code: Annotated[str, Meta(pattern=r"^[0-9]{6}$", description="The six digits from the mail")]


class CodeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Email


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=256)]


class LogoutRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(max_length=256)] | None = None


class Tokens(msgspec.Struct, kw_only=True):
    """OAuth2-style token response; browsers get the same two tokens as cookies."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class Accepted(msgspec.Struct, kw_only=True):
    message: str


RESEND_ANSWER: Final = "If the account exists and is not verified yet, a new code is on its way."

USER_COLUMNS: Final = "id, email, name, role, email_verified_at IS NOT NULL AS email_verified"

INSERT_USER: Final = """
INSERT INTO users (email, name, password_hash, role, email_verified_at)
VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)
ON CONFLICT (lower(email)) DO NOTHING
RETURNING id
"""

USER_BY_ID: Final = f"SELECT {USER_COLUMNS} FROM users WHERE id = $1"
# The unique index on lower(email) finds the one candidate; `account` decides whether it is it.
USER_BY_EMAIL: Final = f"""
SELECT {USER_COLUMNS}, password_hash, disabled_at IS NOT NULL AS disabled,
       CASE WHEN role = 'organizer' THEN ARRAY(
           SELECT cinema_id FROM organizer_cinemas oc WHERE oc.user_id = users.id ORDER BY cinema_id
       ) ELSE '{{}}' END AS cinemas
FROM users WHERE lower(email) = lower($1)
"""


def _user(row: Record) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        email_verified=row["email_verified"],
    )


async def account(conn: AnyConnection, email: str) -> Record | None:
    """The account whose address normalizes to `emails.normalize(email)`, or None."""
    key = emails.normalize(email)
    row: Record | None = await conn.fetchrow(USER_BY_EMAIL, key)
    return row if row is not None and emails.normalize(row["email"]) == key else None


async def create_user(
    conn: AnyConnection, *, email: str, password: str, name: str, role: Role, verified: bool
) -> int:
    """Create an account and return its id; `EmailTaken` when the email (in any case) exists.

    Used by registration, the admin endpoint, `seatmap createuser` and the demo data.
    """
    email = emails.check(email)
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"The password must be at least {MIN_PASSWORD} characters long.", path="$.password"
        )
    if role not in ROLES:
        raise InvalidInput(f"The role must be one of {', '.join(ROLES)}.", path="$.role")
    password_hash = await passwords.hash_password(password)
    user_id: int | None = await conn.fetchval(INSERT_USER, email, name.strip(), password_hash, role, verified)
    if user_id is None:
        raise EmailTaken()
    return user_id


async def _fetch_user(conn: AnyConnection, user_id: int) -> User:
    row = await conn.fetchrow(USER_BY_ID, user_id)
    assert row is not None, "called with the id of an existing user"
    return _user(row)


async def _optional_body(request: Request, type_: type[T]) -> T | None:
    """A body for endpoints where it may be left out (the refresh token then comes from the cookie)."""
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return None
    return await read_body(request, type_)


def _signed_in(
    settings: Settings,
    user_id: int,
    role: Role,
    email_verified: bool,
    refresh_token: str,
    cinemas: Iterable[int] = (),
) -> Response:
    access_token, expires_in = issue_access_token(
        settings, user_id, role, email_verified=email_verified, cinemas=cinemas
    )
    response = respond(Tokens(access_token=access_token, refresh_token=refresh_token, expires_in=expires_in))
    set_session_cookies(response, settings, access_token, refresh_token)
    return response


def _client_ip(request: Request) -> str:
    # uvicorn has already replaced the peer by X-Forwarded-For when the peer is a trusted proxy.
    return request.client.host if request.client else "unknown"


def _login_limits(
    rt: Runtime, email: str, row: Record | None, device: str | None, ip: str
) -> tuple[ratelimit.Limit, ...]:
    """What a login attempt counts against: a known device's own limit alone, or else the
    account's (by id; by normalized address when there is none) and the client address's."""
    settings = rt.settings
    window = settings.login_window
    if device is not None:
        return (
            ratelimit.limit(
                rt, "login-device", device, limit=settings.login_device_max_attempts, window=window
            ),
        )
    subject = (
        ("login-account", str(row["id"])) if row is not None else ("login-email", emails.normalize(email))
    )
    return (
        ratelimit.limit(rt, *subject, limit=settings.login_max_attempts, window=window),
        ratelimit.limit(rt, "login-ip", ip, limit=settings.login_ip_max_attempts, window=window),
    )


@documented(
    "Register a customer account; a verification code is mailed",
    body=Registration,
    responses={201: User, 409: None, 429: None},
    tags=("accounts",),
)
async def register(request: Request) -> Response:
    """At most `SEATMAP_REGISTER_MAX_PER_ADDRESS` attempts per client address per window (429
    with Retry-After), counted before the password is even hashed."""
    rt = runtime(request)
    body = await read_body(request, Registration)
    settings = rt.settings
    await ratelimit.hit(
        rt,
        ratelimit.limit(
            rt,
            "register-ip",
            _client_ip(request),
            limit=settings.register_max_per_address,
            window=settings.register_window,
        ),
    )
    async with rt.pool.acquire() as conn, conn.transaction():
        user_id = await create_user(
            conn, email=body.email, password=body.password, name=body.name, role="customer", verified=False
        )
        user = await _fetch_user(conn, user_id)
        await verification.issue(conn, rt.settings, user_id=user.id, email=user.email, name=user.name)
    return respond(user, 201)


@documented(
    "Verify the account's email with the code from the mail",
    body=CodeCheck,
    responses={200: User, 400: None},
    tags=("accounts",),
)
async def verify(request: Request) -> Response:
    """A wrong, expired or used code is 400 `invalid_code` with a `reason`; after five wrong
    guesses the code is dead and a new one has to be requested."""
    rt = runtime(request)
    body = await read_body(request, CodeCheck)
    async with rt.pool.acquire() as conn:
        async with conn.transaction():
            row = await account(conn, body.email)
            problem = (
                InvalidCode("There is no code for this account.", reason="missing")
                if row is None
                else await verification.consume(conn, rt.settings, user_id=row["id"], code=body.code)
            )
        if problem is not None:
            raise problem  # after the commit: the wrong guess stays counted
        assert row is not None
        user = await _fetch_user(conn, row["id"])
    return respond(user)


@documented(
    "Mail a new verification code (at most one a minute per account)",
    body=CodeRequest,
    responses={202: Accepted, 429: None},
    tags=("accounts",),
)
async def resend_code(request: Request) -> Response:
    """Answers the same for unknown and already verified emails, so it reveals no accounts."""
    rt = runtime(request)
    body = await read_body(request, CodeRequest)
    email = emails.normalize(body.email)
    await ratelimit.hit(
        rt, ratelimit.limit(rt, "verify-resend", email, limit=1, window=verification.RESEND_INTERVAL)
    )
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await account(conn, email)
        if row is not None and not row["email_verified"]:
            await verification.issue(
                conn, rt.settings, user_id=row["id"], email=row["email"], name=row["name"]
            )
    return respond(
        Accepted(message="If the account exists and is not verified yet, a new code is on its way."), 202
    )


@documented(
    "Log in: an access token and a refresh token (also set as cookies)",
    body=Credentials,
    responses={200: Tokens, 401: None, 429: None},
    tags=("accounts",),
)
async def login(request: Request) -> Response:
    """Failed attempts are limited per account and per client IP, or per device for a device
    that logged in to this account before (429 with Retry-After); a successful login clears
    the account's (or the device's) count and remembers the device (`sm_device` cookie)."""
    rt = runtime(request)
    body = await read_body(request, Credentials)
    async with rt.pool.acquire() as conn:
        row = await account(conn, body.email)
    cookie = request.cookies.get(devices.DEVICE_COOKIE)
    device = devices.trusted(rt.settings, cookie, row["id"]) if row is not None else None
    limits = _login_limits(rt, body.email, row, device, _client_ip(request))
    await ratelimit.hit(rt, *limits)
    # Hash even for an unknown email (a dummy), so both failures cost the same time.
    valid = await passwords.verify_password(body.password, row["password_hash"] if row else None)
    if row is None or not valid:
        raise InvalidCredentials()
    if row["disabled"]:
        raise AccountDisabled()
    await ratelimit.reset(rt, limits[0])
    await ratelimit.forgive(rt, *limits[1:])
    async with rt.pool.acquire() as conn:
        refresh_token = await sessions.start(conn, rt.settings, row["id"])
    response = _signed_in(
        rt.settings, row["id"], row["role"], row["email_verified"], refresh_token, row["cinemas"]
    )
    devices.remember(response, rt.settings, cookie, row["id"])
    return response


@documented(
    "Exchange a refresh token (body or `sm_refresh` cookie) for a new pair",
    body=RefreshRequest,
    responses={200: Tokens, 401: None},
    tags=("accounts",),
)
async def refresh(request: Request) -> Response:
    """The presented token is used up. Presenting it again revokes every token of its login."""
    rt = runtime(request)
    body = await _optional_body(request, RefreshRequest)
    token = body.refresh_token if body is not None else request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise InvalidToken("No refresh token was sent.")
    async with rt.pool.acquire() as conn:
        async with conn.transaction():
            result = await sessions.rotate(conn, rt.settings, token)
    if isinstance(result, InvalidToken):
        raise result  # after the commit: a reuse leaves its family revoked
    return _signed_in(
        rt.settings, result.user_id, result.role, result.email_verified, result.refresh_token, result.cinemas
    )


@documented(
    "Log out: revoke the access token and the refresh token's login, clear the cookies",
    body=LogoutRequest,
    body_required=False,
    responses={204: None},
    auth="customer",
    tags=("accounts",),
)
async def logout(request: Request) -> Response:
    rt = runtime(request)
    principal = await require(request)
    body = await _optional_body(request, LogoutRequest)
    token = body.refresh_token if body is not None else None
    token = token or request.cookies.get(REFRESH_COOKIE)
    if token:
        async with rt.pool.acquire() as conn:
            await sessions.end(conn, token, principal.user_id)
    await revoke_access_token(rt, principal)
    response = Response(status_code=204)
    clear_session_cookies(response)
    return response


@documented("The logged-in user", responses={200: Me}, auth="customer", tags=("accounts",))
async def me(request: Request) -> Response:
    rt = runtime(request)
    principal = await require(request)
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(USER_BY_ID, principal.user_id)
    if row is None:
        raise InvalidToken("The account of this token no longer exists.")
    user = _user(row)
    cinemas = sorted(principal.cinemas)
    return respond(Me(**msgspec.structs.asdict(user), cinema_ids=cinemas))


routes: list[BaseRoute] = [
    Route("/auth/register", register, methods=["POST"]),
    Route("/auth/verify", verify, methods=["POST"]),
    Route("/auth/verify/resend", resend_code, methods=["POST"]),
    Route("/auth/login", login, methods=["POST"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/logout", logout, methods=["POST"]),
    Route("/me", me, methods=["GET"]),
]
