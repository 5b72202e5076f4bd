"""Device cookies: a browser or kiosk that logged in to an account before keeps logging in to it
while its address is rate-limited (OWASP's "Slow Down Online Guessing Attacks with Device
Cookies").

The per-IP login limit stops one address guessing many accounts, but every kiosk behind a
cinema's NAT shares that address: thirty wrong passwords typed anywhere behind it would lock
them all out. A successful login therefore leaves an HttpOnly cookie naming the account, signed
with a key derived from the JWT secret. A login that presents a valid one for the account it
logs in to is counted against that device alone (`SEATMAP_LOGIN_DEVICE_MAX_ATTEMPTS` failures
per window), not against the address nor the account; a login without one is limited per
account and per address as before, so an attacker who has no device cookie of the victim's
gains nothing, and one who fills the address's limit locks out only devices unknown to it.

The value is up to `MAX_ACCOUNTS` entries `user_id.nonce.issued.signature` joined by `~`
(a kiosk shared by a few staff remembers each of them); the nonce names the device in its
failure counter. An entry older than `SEATMAP_DEVICE_COOKIE_TTL` is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Final

from starlette.responses import Response

from seatmap.settings import Settings

DEVICE_COOKIE: Final = "sm_device"
MAX_ACCOUNTS: Final = 4
_SEPARATOR: Final = "~"


def _key(settings: Settings) -> bytes:
    # Derived, not the JWT secret itself: a device signature can never pass as a token's.
    return hmac.new(
        settings.jwt_secret.reveal().encode(), b"seatmap device cookie v1", hashlib.sha256
    ).digest()


def _signature(settings: Settings, payload: str) -> str:
    digest = hmac.new(_key(settings), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _entry(settings: Settings, user_id: int) -> str:
    payload = f"{user_id}.{secrets.token_urlsafe(12)}.{int(time.time())}"
    return f"{payload}.{_signature(settings, payload)}"


def _entries(cookie: str | None) -> list[str]:
    return [entry for entry in (cookie or "").split(_SEPARATOR) if entry][:MAX_ACCOUNTS]


def _owner(entry: str) -> str:
    return entry.partition(".")[0]


def trusted(settings: Settings, cookie: str | None, user_id: int) -> str | None:
    """The device's nonce when `cookie` holds a valid, unexpired entry for `user_id`; else None."""
    for entry in _entries(cookie):
        payload, _, signature = entry.rpartition(".")
        owner, _, rest = payload.partition(".")
        nonce, _, issued = rest.partition(".")
        if owner != str(user_id) or not nonce or not issued.isascii() or not issued.isdigit():
            continue
        if not hmac.compare_digest(signature.encode(), _signature(settings, payload).encode()):
            continue
        if int(issued) + settings.device_cookie_ttl > time.time():
            return nonce
    return None


def remember(response: Response, settings: Settings, cookie: str | None, user_id: int) -> None:
    """Set the device cookie after a good login: a fresh entry for `user_id` first, the other
    accounts' entries kept (the oldest dropped beyond `MAX_ACCOUNTS`)."""
    others = [entry for entry in _entries(cookie) if _owner(entry) != str(user_id)]
    value = _SEPARATOR.join([_entry(settings, user_id), *others][:MAX_ACCOUNTS])
    response.set_cookie(
        DEVICE_COOKIE,
        value,
        max_age=settings.device_cookie_ttl,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
        path="/api/auth",  # only login reads it
    )
