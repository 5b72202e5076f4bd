"""Who is calling: JWT access tokens, the session cookies, and the one place roles are checked.

Access tokens are short-lived HS256 JWTs (`sub`, `role`, `exp`, `iat`, `jti`). API clients
send them as `Authorization: Bearer`; browsers get the same token in an HttpOnly SameSite
cookie so the web UI and the WebSocket can use it. Logout puts the token's `jti` on a
deny-list in Redis until the token would have expired anyway; other processes see it within a
second (they trust a token they checked for that long).

Changing a user's role, disabling the account or changing an organizer's cinemas revokes every
access token of that user at once (`revoke_user`): a per-user cut-off time in Redis refuses each
access token issued at or before it (`iat` has millisecond precision for this); the caller revokes
the refresh tokens in PostgreSQL when the user must log in again. "At once" holds on every web
process: `revoke_user` publishes the revocation, each process drops the user's tokens from its
trust cache when it hears it (and caches none of a check that began before), and `revoke_user`
returns when every subscribed process has said so, or after `_TRUSTED_FOR` (one second, when a
trusted token would be checked again anyway). Clocks of the web hosts must agree to well under
that.

Roles are ranked customer < staff < organizer < admin (`has_role`), but an organizer's rank holds
only inside the cinemas it was given (the `cinemas` claim; `scope.py` applies it): every route
that touches one cinema's data checks the scope, so on such a route an organizer is either in its
own cinema or refused with 403.

The token also says whether the email was verified when it was issued (`email_verified`, the
OpenID Connect claim): verification is never taken back, so a token that says yes needs no
database read; one that says no is checked again (`verification.require_verified`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Final, Literal, get_args

import jwt
import msgspec
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection
from starlette.responses import Response

from seatmap.errors import Forbidden, InvalidToken, Unauthorized
from seatmap.runtime import Runtime, runtime
from seatmap.settings import Settings

Role = Literal["customer", "staff", "organizer", "admin"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
# The organizer ranks above staff (it may do what staff may, and more) but only in its cinemas.
_RANK: Final[dict[str, int]] = {"customer": 0, "staff": 1, "organizer": 2, "admin": 3}

ACCESS_COOKIE: Final = "sm_access"
REFRESH_COOKIE: Final = "sm_refresh"
_ALGORITHM: Final = "HS256"


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller, as the access token describes it."""

    user_id: int
    role: Role
    jti: str
    expires_at: int
    issued_at: float = 0.0
    email_verified: bool = False
    # An organizer's cinemas when the token was issued (empty for every other role); a change
    # revokes the user's access tokens, and the next refresh reads them again.
    cinemas: frozenset[int] = frozenset()

    def has_role(self, role: Role) -> bool:
        """Roles are ranked: an admin may do what an organizer may, an organizer what staff may,
        staff what a customer may. An organizer's rank is bounded by its cinemas (scope.py)."""
        return _RANK[self.role] >= _RANK[role]


def issue_access_token(
    settings: Settings,
    user_id: int,
    role: Role,
    *,
    email_verified: bool = False,
    cinemas: Iterable[int] = (),
) -> tuple[str, int]:
    now = time.time()
    claims: dict[str, object] = {
        "sub": str(user_id),
        "role": role,
        "email_verified": email_verified,
        # Milliseconds: a role change revokes the tokens issued up to that moment, not the
        # ones of a login a moment later in the same second.
        "iat": math.floor(now * 1000) / 1000,
        "exp": int(now) + settings.access_token_ttl,
        "jti": uuid.uuid4().hex,
    }
    if role == "organizer":
        claims["cinemas"] = sorted(cinemas)
    token = jwt.encode(claims, settings.jwt_secret.reveal(), algorithm=_ALGORITHM)
    return token, settings.access_token_ttl


def decode_access_token(settings: Settings, token: str) -> Principal:
    try:
        # `algorithms` pins HS256: a token that says alg=none (or RS256 with our secret as a
        # public key) is refused before its signature is even looked at.
        claims = jwt.decode(
            token,
            settings.jwt_secret.reveal(),
            algorithms=[_ALGORITHM],
            options={"require": ["sub", "role", "exp", "iat", "jti"]},
        )
        user_id = int(claims["sub"])
        role = claims["role"]
        if role not in ROLES:
            raise InvalidToken()
        cinemas = claims.get("cinemas", [])
        if not isinstance(cinemas, list) or not all(type(c) is int for c in cinemas):
            raise InvalidToken()
        return Principal(
            user_id=user_id,
            role=role,
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            issued_at=float(claims["iat"]),
            email_verified=claims.get("email_verified") is True,
            cinemas=frozenset(cinemas) if role == "organizer" else frozenset(),
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidToken() from None


def token_from(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise InvalidToken("The Authorization header must be `Bearer <token>`.")
        return value.strip()
    return conn.cookies.get(ACCESS_COOKIE) or None


def _revoked_key(rt: Runtime, jti: str) -> str:
    return rt.key("revoked", jti)


def _cutoff_key(rt: Runtime, user_id: int) -> str:
    return rt.key("revoked-user", str(user_id))


# A token verified (signature and deny-list) is trusted by this process for this long: a buyer
# sends the same token five times in a few hundred milliseconds, and each check was a JWT decode
# and a Redis round trip. A logout takes effect at once in the process that served it, and
# within this long in the others.
_TRUSTED_FOR: Final = 1.0
_TRUSTED_MAX: Final = 10_000


async def principal_from_token(rt: Runtime, token: str) -> Principal:
    trusted = rt.state.trusted_tokens
    now = time.monotonic()
    known = trusted.get(token)
    if known is not None and now - known[1] < _TRUSTED_FOR and known[0].expires_at > time.time():
        return known[0]
    principal = decode_access_token(rt.settings, token)
    await _check_revocation(rt, token, principal, now)
    return principal


async def still_valid(rt: Runtime, token: str, principal: Principal) -> Principal:
    """The principal a socket authenticated as, unless its token was revoked since (logout, a
    new role, a disabled account): checked at each command, through the same trust cache. Its
    expiry is not checked again: an open socket keeps acting for whom it authenticated."""
    now = time.monotonic()
    known = rt.state.trusted_tokens.get(token)
    if known is not None and now - known[1] < _TRUSTED_FOR:
        return principal
    await _check_revocation(rt, token, principal, now)
    return principal


async def _check_revocation(rt: Runtime, token: str, principal: Principal, now: float) -> None:
    """Refuse a revoked token; trust it for `_TRUSTED_FOR` unless a revocation of its user was
    heard since this check began (it may have read Redis before the cut-off was written)."""
    started = time.monotonic()
    async with rt.redis.pipeline(transaction=False) as pipe:
        pipe.exists(_revoked_key(rt, principal.jti))
        pipe.get(_cutoff_key(rt, principal.user_id))
        revoked, cutoff = await pipe.execute()
    if revoked or (cutoff is not None and principal.issued_at <= float(cutoff)):
        raise InvalidToken("The token has been revoked.")
    heard = rt.state.revoked_users.get(principal.user_id)
    if heard is not None and heard >= started:
        return
    trusted = rt.state.trusted_tokens
    if len(trusted) >= _TRUSTED_MAX:
        trusted.clear()
    trusted[token] = (principal, now)


async def authenticate(conn: HTTPConnection) -> Principal | None:
    """The caller, or None when no token was sent; a bad token is an error, not anonymity."""
    token = token_from(conn)
    if token is None:
        return None
    return await principal_from_token(runtime(conn), token)


async def require(conn: HTTPConnection, role: Role = "customer") -> Principal:
    """The one role check: 401 without a valid token, 403 with too small a role."""
    principal = await authenticate(conn)
    if principal is None:
        raise Unauthorized()
    if not principal.has_role(role):
        raise Forbidden(f"This needs the {role} role.")
    return principal


async def revoke_access_token(rt: Runtime, principal: Principal) -> None:
    remaining = principal.expires_at - int(time.time())
    if remaining > 0:
        await rt.redis.set(_revoked_key(rt, principal.jti), "1", ex=remaining)
    trusted = rt.state.trusted_tokens
    for token in [t for t, (p, _) in trusted.items() if p.jti == principal.jti]:
        del trusted[token]


def revocations_channel(rt: Runtime) -> str:
    """Where `revoke_user` tells every web process (app.py subscribes its listener)."""
    return rt.key("revocations")


def _ack_key(rt: Runtime, nonce: str) -> str:
    return rt.key("revocation-ack", nonce)


def _forget_user(rt: Runtime, user_id: int) -> None:
    """Drop the user's tokens from this process's trust cache, and trust none of a check that
    began before now (it may have read Redis before the cut-off was written)."""
    revoked = rt.state.revoked_users
    now = time.monotonic()
    if len(revoked) >= _TRUSTED_MAX:
        for uid in [u for u, at in revoked.items() if now - at > _TRUSTED_FOR]:
            del revoked[uid]
    revoked[user_id] = now
    trusted = rt.state.trusted_tokens
    for token in [t for t, (p, _) in trusted.items() if p.user_id == user_id]:
        del trusted[token]


async def revoke_user(rt: Runtime, user_id: int) -> None:
    """Refuse every access token of `user_id` issued until now, on every process, before this
    returns (see the module docstring for the bound); call it after the change that made them
    wrong was committed, so a token issued meanwhile, from the old row, is refused too."""
    await rt.redis.set(_cutoff_key(rt, user_id), repr(time.time()), ex=rt.settings.access_token_ttl + 1)
    _forget_user(rt, user_id)
    nonce = uuid.uuid4().hex
    ack = _ack_key(rt, nonce)
    # On a cluster a sharded channel (Channels.add_handler): SPUBLISH counts its listeners there.
    publish = rt.redis.spublish if rt.settings.redis_cluster else rt.redis.publish
    listeners: int = await publish(revocations_channel(rt), f"{user_id} {nonce}")
    deadline = time.monotonic() + _TRUSTED_FOR
    try:
        for _ in range(listeners):
            left = deadline - time.monotonic()
            if left <= 0 or await rt.redis.blpop([ack], timeout=max(left, 0.01)) is None:
                break  # a process that does not answer trusts its cache for no longer than this
    finally:
        await rt.redis.delete(ack)


def revocation_listener(rt: Runtime) -> Callable[[str], None]:
    """The handler for `revocations_channel`: forget the user's tokens at once, then say so."""
    acks: set[asyncio.Task[None]] = set()

    async def acknowledge(nonce: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            key = _ack_key(rt, nonce)
            async with rt.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, "1")
                pipe.expire(key, 10)
                await pipe.execute()

    def heard(data: str) -> None:
        raw_id, _, nonce = data.partition(" ")
        if not raw_id.isascii() or not raw_id.isdigit() or not nonce:
            return
        _forget_user(rt, int(raw_id))
        task = asyncio.create_task(acknowledge(nonce), name="auth.revocation-ack")
        acks.add(task)
        task.add_done_callback(acks.discard)

    return heard


def set_session_cookies(response: Response, settings: Settings, access: str, refresh: str) -> None:
    response.set_cookie(
        ACCESS_COOKIE,
        access,
        max_age=settings.access_token_ttl,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    # The refresh token only ever travels to the auth endpoints.
    response.set_cookie(
        REFRESH_COOKIE,
        refresh,
        max_age=settings.refresh_token_ttl,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
        path="/api/auth",
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path="/api/auth")
