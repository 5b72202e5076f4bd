"""An account's live holds across screenings, capped: `SEATMAP_HOLDS_PER_ACCOUNT`.

One sorted set per account (`{prefix}:{acct:ID}:holds`, its own hash tag), so every script
touches that one key and none is cross-slot on Redis Cluster: the cap cannot be one atomic step
with a screening's hold script. The consistency instead: add first, then count, in one script
on the account's key (`account_reserve`), so requests racing each other each see the others and
the cap is never passed (at the very edge both may be refused: the client retries). A token
keeps counting while its hold's TTL key exists (released, sold and restocked holds stop
counting; checked only when the account may be at its cap), and a reservation whose hold is not
made yet counts for `IN_FLIGHT_MS` at most (a process that dies mid-hold leaks a slot for that
long). The key expires after the longest hold. A hold that is then refused or fails is taken
back at once (`forget`, the compensating step in `Holds.create`), so the trade-off against one
atomic step is only this: for the moment between reserve and hold, a slot counts that may not
be used, and a process killed in that moment leaks it for `IN_FLIGHT_MS`. Never the other way:
no account gets more holds than its cap (tests/live/test_account_holds.py; on a cluster the
account's key and the screening's keys are on different primaries, which is why it is built so).

Each step is a script through the auto-pipelined `Scripts`, like every hold: a plain redis-py
command or MULTI costs a pool checkout and its own round trip, which made a hold cost twice the
CPU (bench.live's holds phase).

The same set is how a hold follows its buyer: `GET /api/holds` lists the account's live holds
from it, so another tab or device (or a client that lost its token) finds the hold again. It is
kept for every public hold, with or without the cap (0 counts as no cap).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts.auth import require
from seatmap.api import documented, respond
from seatmap.errors import AccountHoldLimit
from seatmap.live import replies
from seatmap.live.inventory import Inventory
from seatmap.live.protocol import GASelection, HoldResult
from seatmap.runtime import runtime

IN_FLIGHT_MS: Final = 30_000  # a reservation counts this long without its hold
_NO_CAP: Final = 2**31  # the cap 0 (none): the set is still kept, for listing
_RESERVE: Final = msgspec.json.Decoder(replies.Reserved | replies.Crowded)
_DONE: Final = msgspec.json.Decoder(replies.Reserved)


def account_key(prefix: str, user_id: int) -> str:
    """Its own hash tag: one key per account, never touched together with a screening's keys."""
    return f"{prefix}:{{acct:{user_id}}}:holds"


class AccountHolds:
    def __init__(self, inventory: Inventory, cap: int, key_ttl_ms: int) -> None:
        self.inventory = inventory
        self.cap = cap
        self.key_ttl_ms = key_ttl_ms

    def key(self, user_id: int) -> str:
        return account_key(self.inventory.prefix, user_id)

    async def reserve(self, user_id: int, token: str) -> None:
        """Count `token` against the account's cap before its hold is made; `AccountHoldLimit`
        (and nothing counted) if the account holds on `cap` screenings already."""
        now_ms = int(time.time() * 1000)
        key = self.key(user_id)
        raw = await self.inventory.scripts(
            "account_reserve", [key], [token, now_ms, self.cap or _NO_CAP, self.key_ttl_ms + IN_FLIGHT_MS]
        )
        reply = _RESERVE.decode(raw)
        if isinstance(reply, replies.Reserved):
            return
        flat = reply.members
        others = [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2) if flat[i] != token]
        redis = self.inventory.redis
        async with redis.pipeline(transaction=False) as pipe:
            for other, _ in others:
                pipe.exists(self.inventory.keys(_screening_of(other)).ttl(other))
            alive: list[int] = await pipe.execute()
        gone = [
            other
            for (other, score), live in zip(others, alive, strict=True)
            if not live and (score == 0 or now_ms - score > IN_FLIGHT_MS)
        ]
        if len(others) - len(gone) >= self.cap:
            await self.forget(user_id, *gone, token)
            raise AccountHoldLimit(
                f"You can hold seats on at most {self.cap} screenings at once: "
                "buy or release one of those holds.",
                limit=self.cap,
            )
        if gone:
            await self.forget(user_id, *gone)

    async def made(self, user_id: int, token: str) -> None:
        """The hold exists: it counts while its TTL key lives, no longer as in flight."""
        _DONE.decode(await self.inventory.scripts("account_made", [self.key(user_id)], [token]))

    async def forget(self, user_id: int, *tokens: str) -> None:
        """These holds no longer count (released, sold, refused, or found gone)."""
        if tokens:
            _DONE.decode(await self.inventory.scripts("account_forget", [self.key(user_id)], list(tokens)))

    async def live(self, user_id: int) -> list[HoldResult]:
        """The account's live holds, soonest expiry first: each hold's own keys decide (owner and a
        TTL key that has not lapsed), so a token the set still lists but that ended is left out.

        One pipeline without MULTI: the holds of different screenings live in different slots.
        """
        tokens = [str(token) for token in await self.inventory.redis.zrange(self.key(user_id), 0, -1)]
        if not tokens:
            return []
        async with self.inventory.redis.pipeline(transaction=False) as pipe:
            for token in tokens:
                k = self.inventory.keys(_screening_of(token))
                pipe.hgetall(k.hold(token))
                pipe.pttl(k.ttl(token))
            found: list[object] = await pipe.execute()
        holds = []
        for i, token in enumerate(tokens):
            hold, ttl = found[2 * i], found[2 * i + 1]
            assert isinstance(hold, dict) and isinstance(ttl, int)
            if hold.get("owner") != str(user_id) or ttl <= 0:
                continue
            holds.append(
                HoldResult(
                    token=token,
                    screening_id=_screening_of(token),
                    seats=[s for s in hold["seats"].split(",") if s],
                    ga=GASelection(hold["area"], int(hold["qty"])) if hold.get("area") else None,
                    expires_at=_iso(int(hold["expires_ms"])),
                    max_expires_at=_iso(int(hold["max_ms"])),
                )
            )
        return sorted(holds, key=lambda h: h.expires_at)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _screening_of(token: str) -> int:
    """A token names its screening (`42.<random>`; holds.py makes them)."""
    return int(token.partition(".")[0])


@documented("Your live holds", responses={200: list[HoldResult]}, auth="customer", tags=("holds",))
async def list_holds(request: Request) -> Response:
    """Every live hold of the caller, on any screening, with its token: another tab or device of
    the same buyer picks its hold up from here (box-office holds are the staff's, not listed)."""
    who = await require(request)
    return respond(await runtime(request).holds.accounts.live(who.user_id))


routes: list[BaseRoute] = [Route("/holds", list_holds, methods=["GET"])]
