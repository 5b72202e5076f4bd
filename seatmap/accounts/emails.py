"""The one form an email address is compared in, so every door agrees on whose account it is.

Registration stores it, and login, its rate limits, verification and resending look accounts
up by it. Before it existed each compared differently: the login limiter lowercased in Python
(`"İ".lower()` is `"i̇"`, an i and a combining dot), while PostgreSQL's `lower()` in a UTF-8
locale folds `İ` to a plain `i`. `vİctim@…` therefore reached the account of `victim@…`
through a limiter counter of its own, and each `i` of an address doubled the counters.

`normalize` is pure: NFKC (so a full-width at sign U+FF20 or the Kelvin sign U+212A is the
character it looks like) and then Python's `lower()`. The database's `lower()` only finds a
candidate row through the unique index; `users.account` then keeps it only when its address normalizes
to the same string, so a locale that folds more than Python does cannot join two addresses.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from seatmap.errors import InvalidInput

# The local part and domain may be almost anything, but there is exactly one @, no spaces,
# and the domain has a dot between non-empty labels: enough to catch typos, not a parser.
_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+$")


def normalize(raw: str) -> str:
    """`raw` as accounts are keyed: outer whitespace dropped, NFKC, lower case (and NFKC again,
    so that normalizing twice changes nothing)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw.strip()).lower())


def check(raw: str) -> str:
    """The normalized address, or `InvalidInput` (422 naming `$.email`) when it is not one."""
    email = normalize(raw)
    if not _EMAIL.match(email):
        raise InvalidInput("This is not a valid email address.", path="$.email")
    return email
