"""What each Lua script answers, as Structs: the script boundary's typed half.

A script replies with a JSON array whose first element names the outcome (`reply` in
prelude.lua), so each outcome is an array-like Struct tagged with that name, and each script's
reply is a union of them, decoded in one step by a msgspec Decoder (faster than reading a
nested RESP array by index, and it refuses a reply of the wrong shape). A screening that is
not loaded answers `["noinit"]`, which `Inventory` handles before decoding (it loads and
runs the script again), so it is in none of the unions.
"""

from __future__ import annotations

from typing import Final

import msgspec

NOT_LOADED: Final = '["noinit"]'


class _Reply(msgspec.Struct, array_like=True, frozen=True):
    pass


# ---- success -------------------------------------------------------------------------------------


class Held(_Reply, frozen=True, tag="ok"):
    """A new hold (hold, best)."""

    seq: int
    expires_ms: int
    max_ms: int
    seats: list[str]


class Modified(_Reply, frozen=True, tag="ok"):
    """Seats added to or removed from a hold; seq 0 when nothing changed."""

    seq: int
    seats: list[str]


class Extended(_Reply, frozen=True, tag="ok"):
    expires_ms: int
    max_ms: int
    seats: list[str]
    area: str
    qty: int


class Changed(_Reply, frozen=True, tag="ok"):
    """Released, sold, freed, blocked, unblocked or a new status; seq 0 when no seat changed."""

    seq: int


class Restocked(_Reply, frozen=True, tag="ok"):
    """An expired hold back on sale, by this call; `lag_ms` after its deadline (Redis's clock)."""

    seq: int
    lag_ms: int


class RestockedDue(_Reply, frozen=True, tag="ok"):
    """The sweeper's batch: the lag after its deadline of each hold this call restocked, and how
    many were found extended meanwhile (left alone)."""

    seq: int
    lags_ms: list[int]
    alive: int


class Reconciled(_Reply, frozen=True, tag="ok"):
    """Seats PostgreSQL has sold that Redis showed free or held, marked sold again."""

    seq: int
    seats: list[str]


class Dropped(_Reply, frozen=True, tag="ok"):
    seq: int
    holds: int


class Loaded(_Reply, frozen=True, tag="ok"):
    """`fresh` is 0 when the screening was loaded already (another process came first)."""

    fresh: int


class Reserved(_Reply, frozen=True, tag="ok"):
    """A new hold counted against its account, well inside the cap (account_holds.lua); also the
    answer of `account_made` and `account_forget`."""


class Crowded(_Reply, frozen=True, tag="crowded"):
    """The account may be at its cap: every entry, flat (token, score, ...), for Python to check
    which holds still live (account_holds.lua)."""

    members: list[str]


class Admitted(_Reply, frozen=True, tag="ok"):
    """One more socket from an address (connections.lua); `total` across processes, with it."""

    total: int


# ---- refusals and no-ops -------------------------------------------------------------------------


class Taken(_Reply, frozen=True, tag="taken"):
    """Seats held or sold by someone else, and blocked seats."""

    taken: list[str]
    blocked: list[str]


class Strand(_Reply, frozen=True, tag="strand"):
    seat: str


class NotOnSale(_Reply, frozen=True, tag="not_on_sale"):
    reason: str  # cancelled | started | draft | ...


class HoldLimit(_Reply, frozen=True, tag="hold_limit"):
    tokens: list[str]


class AddressLimit(_Reply, frozen=True, tag="address_limit"):
    """The client's address holds `held` seats of this screening; `limit` is the most it may."""

    limit: int
    held: int


class UnknownArea(_Reply, frozen=True, tag="unknown_area"):
    area: str


class SoldOut(_Reply, frozen=True, tag="sold_out"):
    remaining: int


class NoneFree(_Reply, frozen=True, tag="none"):
    """No candidate (or ranked block) is free and strands no seat."""


class NoList(_Reply, frozen=True, tag="nolist"):
    """The ranked list of blocks is not in Redis (yet, or any more)."""


class Gone(_Reply, frozen=True, tag="gone"):
    """No such hold of this owner: never was, released or sold."""


class Expired(_Reply, frozen=True, tag="expired"):
    """The owner's hold passed its deadline (restocked or about to be)."""


class Alive(_Reply, frozen=True, tag="alive"):
    """The hold was extended meanwhile: nothing to restock."""


class NotHeld(_Reply, frozen=True, tag="not_held"):
    seats: list[str]


class TooMany(_Reply, frozen=True, tag="too_many"):
    count: int
    limit: int


class Busy(_Reply, frozen=True, tag="busy"):
    """Seats that are held or sold, so they cannot be blocked."""

    seats: list[str]


class Full(_Reply, frozen=True, tag="full"):
    """The address has `limit` sockets open already (connections.lua)."""

    limit: int


class Done(_Reply, frozen=True, tag="done"):
    """This order was handled before (its marker is set): nothing changed."""


Refusal = (
    Taken
    | Strand
    | NotOnSale
    | HoldLimit
    | UnknownArea
    | SoldOut
    | Gone
    | Expired
    | NotHeld
    | TooMany
    | AddressLimit
)

HoldReply = Held | Taken | Strand | NotOnSale | HoldLimit | UnknownArea | SoldOut | AddressLimit | NoneFree
BestReply = Held | NotOnSale | HoldLimit | AddressLimit | NoneFree | NoList
ModifyReply = Modified | Gone | Expired | NotOnSale | Taken | NotHeld | TooMany | Strand | AddressLimit
ExtendReply = Extended | Gone | Expired | NotOnSale
ReleaseReply = Changed | Gone | Expired
RestockReply = Restocked | Gone | Alive
MarkedReply = Changed | Done
BlockReply = Changed | Busy
