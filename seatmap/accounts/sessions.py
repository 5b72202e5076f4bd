"""Login sessions as chains of rotating refresh tokens.

A login starts a family; every refresh uses up the presented token and issues the next one
of the same family. A token is 32 random bytes (urlsafe), and only its SHA-256 is stored: a
copy of the database cannot be replayed. Presenting a token that was already used means
two parties hold the chain (one of them copied it), so the whole family is revoked and
both have to log in again (the OAuth 2.0 Security BCP's refresh token rotation).

The user's role (and an organizer's cinemas) is read from the database at every refresh, never
copied from the old token: a user promoted or demoted gets the new role with the next access
token. A disabled account refreshes no more (its tokens were revoked when it was disabled; this
also refuses a refresh that raced the disabling).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Final

from seatmap.accounts.auth import Role
from seatmap.db import AnyConnection
from seatmap.errors import InvalidToken
from seatmap.settings import Settings

INSERT: Final = """
INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
"""

# FOR UPDATE OF refresh_tokens: two refreshes with the same token are serialised, so exactly
# one succeeds and the other sees it used (and revokes the family).
FIND: Final = """
SELECT t.id, t.user_id, t.family, t.expires_at <= now() AS expired,
       t.used_at IS NOT NULL AS used, t.revoked_at IS NOT NULL AS revoked, u.role,
       u.email_verified_at IS NOT NULL AS email_verified, u.disabled_at IS NOT NULL AS disabled,
       CASE WHEN u.role = 'organizer' THEN ARRAY(
           SELECT cinema_id FROM organizer_cinemas oc WHERE oc.user_id = u.id ORDER BY cinema_id
       ) ELSE '{}' END AS cinemas
FROM refresh_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = $1
FOR UPDATE OF t
"""

MARK_USED: Final = "UPDATE refresh_tokens SET used_at = now() WHERE id = $1"

REVOKE_FAMILY: Final = """
UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL
"""

REVOKE_USER: Final = "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"

REVOKE_FAMILY_OF: Final = """
UPDATE refresh_tokens SET revoked_at = now()
WHERE revoked_at IS NULL
  AND family = (SELECT family FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)
"""


@dataclass(frozen=True)
class Rotated:
    user_id: int
    role: Role
    email_verified: bool
    refresh_token: str
    cinemas: tuple[int, ...] = ()


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def start(
    conn: AnyConnection, settings: Settings, user_id: int, family: uuid.UUID | None = None
) -> str:
    """Issue a refresh token: the first of a new family (a login) or the next of one."""
    token = secrets.token_urlsafe(32)
    await conn.execute(INSERT, user_id, family or uuid.uuid4(), _hash(token), settings.refresh_token_ttl)
    return token


async def rotate(conn: AnyConnection, settings: Settings, token: str) -> Rotated | InvalidToken:
    """Use up `token` and issue its successor. Must run in a transaction.

    On a reused token the family is revoked and the error is returned, not raised: the caller
    commits the revocation first, then raises.
    """
    row = await conn.fetchrow(FIND, _hash(token))
    if row is None or row["revoked"] or row["disabled"]:
        return InvalidToken("The refresh token is invalid or has been revoked.")
    if row["used"]:
        await conn.execute(REVOKE_FAMILY, row["family"])
        return InvalidToken("The refresh token was already used; every session of this login is revoked.")
    if row["expired"]:
        return InvalidToken("The refresh token has expired.")
    await conn.execute(MARK_USED, row["id"])
    successor = await start(conn, settings, row["user_id"], row["family"])
    return Rotated(
        user_id=row["user_id"],
        role=row["role"],
        email_verified=row["email_verified"],
        refresh_token=successor,
        cinemas=tuple(row["cinemas"]),
    )


async def end(conn: AnyConnection, token: str, user_id: int) -> None:
    """Revoke the family of `token` (logout); a token of someone else is ignored."""
    await conn.execute(REVOKE_FAMILY_OF, _hash(token), user_id)


async def end_all(conn: AnyConnection, user_id: int) -> None:
    """Revoke every login of the user (their role changed: the old tokens speak for a role they
    no longer have)."""
    await conn.execute(REVOKE_USER, user_id)
