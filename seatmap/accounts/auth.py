"""Who is calling: JWT access tokens, the session cookies, and the one place roles are checked.

Access tokens are short-lived HS256 JWTs (`sub`, `role`, `exp`, `iat`, `jti`). API clients
send them as `Authorization: Bearer`; browsers get the same token in an HttpOnly SameSite
cookie so the web UI and the WebSocket can use it. Logout puts the token's `jti` on a
deny-list in Redis until the token would have expired anyway; other processes see it within a
second (they trust a token they checked for that long).

Changing a user's role revokes every token of that user at once (`revoke_user`): a per-user
cut-off time in Redis refuses each access token issued at or before it (`iat` has millisecond
precision for this), and the user's refresh tokens are revoked in PostgreSQL. The bound is the
same as logout's: at once in the process that made the change, and at most `_TRUSTED_FOR` (one
second) later in the others, because a process trusts a token for that long after a check that
*started* before the cut-off was written. Clocks of the web hosts must agree to well under that.

The token also says whether the email was verified when it was issued (`email_verified`, the
OpenID Connect claim): verification is never taken back, so a token that says yes needs no
database read; one that says no is checked again (`verification.require_verified`).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Final, Literal, get_args

import jwt
import msgspec
from starlette.requests import HTTPConnection
from starlette.responses import Response

from seatmap.errors import Forbidden, InvalidToken, Unauthorized
from seatmap.runtime import Runtime, runtime
from seatmap.settings import Settings

Role = Literal["customer", "staff", "admin"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
_RANK: Final[dict[str, int]] = {"customer": 0, "staff": 1, "admin": 2}

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

    def has_role(self, role: Role) -> bool:
        """Roles are ranked: an admin may do what staff may, staff what a customer may."""
        return _RANK[self.role] >= _RANK[role]


def issue_access_token(
    settings: Settings, user_id: int, role: Role, *, email_verified: bool = False
) -> tuple[str, int]:
    now = time.time()
    claims = {
        "sub": str(user_id),
        "role": role,
        "email_verified": email_verified,
        # Milliseconds: a role change revokes the tokens issued up to that moment, not the
        # ones of a login a moment later in the same second.
        "iat": math.floor(now * 1000) / 1000,
        "exp": int(now) + settings.access_token_ttl,
        "jti": uuid.uuid4().hex,
    }
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
        return Principal(
            user_id=user_id,
            role=role,
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            issued_at=float(claims["iat"]),
            email_verified=claims.get("email_verified") is True,
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
    async with rt.redis.pipeline(transaction=False) as pipe:
        pipe.exists(_revoked_key(rt, principal.jti))
        pipe.get(_cutoff_key(rt, principal.user_id))
        revoked, cutoff = await pipe.execute()
    if revoked or (cutoff is not None and principal.issued_at <= float(cutoff)):
        raise InvalidToken("The token has been revoked.")
    if len(trusted) >= _TRUSTED_MAX:
        trusted.clear()
    trusted[token] = (principal, now)
    return principal


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


async def revoke_user(rt: Runtime, user_id: int) -> None:
    """Refuse every access token of `user_id` issued until now, in every process (see the module
    docstring for how soon); call it after the change that made them wrong was committed, so a
    token issued meanwhile, from the old row, is refused too."""
    await rt.redis.set(_cutoff_key(rt, user_id), repr(time.time()), ex=rt.settings.access_token_ttl + 1)
    trusted = rt.state.trusted_tokens
    for token in [t for t, (p, _) in trusted.items() if p.user_id == user_id]:
        del trusted[token]


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
