"""Email verification by a one-time code: six digits, mailed through the outbox.

A code expires after `settings.verification_code_ttl`, works once, and dies after
`MAX_ATTEMPTS` wrong guesses, so guessing one of a million codes is hopeless (and resending
is rate-limited by the caller). Only the newest code of a user counts: issuing one deletes
the older unused ones. Codes are stored as an HMAC keyed by the server secret: a copy of the
database alone cannot be turned back into live codes by trying all million.

Holding seats and ordering need a verified email (`require_verified`, unless
`SEATMAP_REQUIRE_VERIFIED_EMAIL` is off): otherwise throwaway addresses could hoard a
screening's seats.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from seatmap import mail
from seatmap.accounts.auth import Principal
from seatmap.db import AnyConnection
from seatmap.errors import EmailUnverified, InvalidCode, InvalidToken
from seatmap.runtime import Runtime
from seatmap.settings import Settings

MAX_ATTEMPTS: Final = 5
CODE_DIGITS: Final = 6
# A new code can be asked for once per this many seconds per email (enforced by the caller).
RESEND_INTERVAL: Final = 60

DELETE_UNUSED: Final = "DELETE FROM email_verifications WHERE user_id = $1 AND used_at IS NULL"

INSERT: Final = """
INSERT INTO email_verifications (user_id, code_hash, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
"""

# FOR UPDATE: two guesses at once are counted one after the other, and a code is used once.
NEWEST: Final = """
SELECT id, code_hash, attempts, expires_at <= now() AS expired, used_at IS NOT NULL AS used
FROM email_verifications
WHERE user_id = $1
ORDER BY created_at DESC, id DESC
LIMIT 1
FOR UPDATE
"""

COUNT_WRONG: Final = "UPDATE email_verifications SET attempts = attempts + 1 WHERE id = $1"
MARK_USED: Final = "UPDATE email_verifications SET used_at = now() WHERE id = $1"
IS_VERIFIED: Final = "SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1"
MARK_VERIFIED: Final = "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1"


def _digest(settings: Settings, user_id: int, code: str) -> bytes:
    key = settings.jwt_secret.reveal().encode()
    return hmac.new(key, f"email-verification:{user_id}:{code}".encode(), hashlib.sha256).digest()


def _mail_body(name: str, code: str, ttl: int) -> str:
    minutes = max(ttl // 60, 1)
    greeting = f"Hello {name}," if name else "Hello,"
    return (
        f"{greeting}\n\n"
        f"your seatmap verification code is {code}\n\n"
        f"It is valid for {minutes} minute{'s' if minutes != 1 else ''} and can be used once.\n"
        "If you did not create a seatmap account, ignore this mail.\n"
    )


async def issue(conn: AnyConnection, settings: Settings, *, user_id: int, email: str, name: str) -> None:
    """Make a new code for the user, replacing older ones, and put it in the mail outbox.
    Runs on the caller's connection, inside the caller's transaction."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    await conn.execute(DELETE_UNUSED, user_id)
    await conn.execute(INSERT, user_id, _digest(settings, user_id, code), settings.verification_code_ttl)
    await mail.enqueue(
        conn,
        settings,
        to=email,
        subject=f"Your seatmap verification code: {code}",
        body=_mail_body(name, code, settings.verification_code_ttl),
        user_id=user_id,
    )


async def consume(conn: AnyConnection, settings: Settings, *, user_id: int, code: str) -> InvalidCode | None:
    """Check a code and, when it is right, mark it used and the user's email verified.

    Returns the error to raise rather than raising it, because a wrong guess must be counted
    even though the request fails: the caller commits its transaction, then raises.
    """
    row = await conn.fetchrow(NEWEST, user_id)
    if row is None:
        return InvalidCode("There is no code for this account; ask for a new one.", reason="missing")
    if row["used"]:
        return InvalidCode("This code has already been used.", reason="used")
    if row["expired"]:
        return InvalidCode("This code has expired; ask for a new one.", reason="expired")
    if row["attempts"] >= MAX_ATTEMPTS:
        return InvalidCode("Too many wrong attempts; ask for a new code.", reason="attempts")
    if not hmac.compare_digest(row["code_hash"], _digest(settings, user_id, code)):
        await conn.execute(COUNT_WRONG, row["id"])
        left = MAX_ATTEMPTS - row["attempts"] - 1
        return InvalidCode(
            f"The code is wrong; {left} attempt{'s' if left != 1 else ''} left.", reason="wrong"
        )
    await conn.execute(MARK_USED, row["id"])
    await conn.execute(MARK_VERIFIED, user_id)
    return None


async def require_verified(rt: Runtime, who: Principal) -> None:
    """`EmailUnverified` (403, saying how to verify) unless the caller's email is verified.

    The one check in front of holding seats (REST and the socket) and ordering. A token issued
    after verification says so and costs nothing; one issued before is checked in PostgreSQL, so
    entering the code works at once, without logging in again.
    """
    if who.email_verified or not rt.settings.require_verified_email:
        return
    async with rt.pool.acquire() as conn:
        verified: bool | None = await conn.fetchval(IS_VERIFIED, who.user_id)
    if verified is None:
        raise InvalidToken("The account of this token no longer exists.")
    if not verified:
        raise EmailUnverified()
