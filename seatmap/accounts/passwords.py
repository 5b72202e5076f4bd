"""Password hashing with stdlib scrypt, memory-hard, in a worker thread.

A hash is stored as a self-describing string `scrypt$n$r$p$salt_b64$hash_b64`, so the cost
parameters can be raised later without breaking existing accounts: `verify` reads them from
the string. Hashing takes tens of milliseconds of CPU on purpose, so it runs in a thread and
never stalls the event loop (and the other requests on it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from typing import Final

N: Final = 2**14
R: Final = 8
P: Final = 1
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32

# Verifying against this costs exactly what verifying a real password costs, and never
# matches: login hashes it for an unknown email, so response time does not tell an attacker
# which emails have accounts.
_ZERO_SALT = base64.b64encode(bytes(SALT_BYTES)).decode()
DUMMY_HASH: Final = f"scrypt${N}${R}${P}${_ZERO_SALT}${base64.b64encode(bytes(HASH_BYTES)).decode()}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # OpenSSL refuses by default above 32 MiB; allow what these parameters need (128·n·r·p).
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_password_sync(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P, HASH_BYTES)
    return f"scrypt${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password_sync(password: str, stored: str) -> bool:
    """True when `password` matches; False for a wrong password or an unreadable hash."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        actual = _scrypt(password, salt, int(n), int(r), int(p), len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(password: str, stored: str | None) -> bool:
    """Check a password against a stored hash; with `stored=None` (no such account) hash a
    dummy so the caller spends the same time and gets the same False."""
    return await asyncio.to_thread(verify_password_sync, password, stored or DUMMY_HASH)
