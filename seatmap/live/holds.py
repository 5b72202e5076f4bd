"""Holds: a user's temporary claim on seats (or GA units) of one screening, in Redis.

Every operation is one Lua script in holds.lua, so a multi-seat hold is all-or-nothing
(invariant 2) and its delta is numbered and published in the same step (invariant 3). The
REST routes here and the WebSocket commands in live.py call the same `Holds` methods.

A token names its screening (`42.<random>`), so a token alone finds its keys; the random
part has 144 bits, so tokens cannot be guessed.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts.auth import Principal, require
from seatmap.api import documented, read_body, respond
from seatmap.errors import (
    HoldLimit,
    InvalidInput,
    NotEnoughAdjacent,
    NotFound,
    NotOnSale,
    SeatTaken,
    SoldOut,
    TooManySeats,
    UnknownSeats,
    WouldStrandSeat,
)
from seatmap.live.inventory import Inventory, Keys
from seatmap.live.protocol import BestAvailable, GASelection, HoldResult, SeatLabel
from seatmap.live.seats import best_split, largest_block, ranked_blocks
from seatmap.runtime import Runtime, runtime
from seatmap.settings import Settings

_TOKEN: Final = re.compile(r"^(\d{1,18})\.([A-Za-z0-9_-]{16,64})$")
# The sweeper forgets a screening this long after its last new hold (see expiry.py).
ACTIVE_MARGIN_MS: Final = 60_000
_ACTIVE_REFRESH: Final = 10.0
_CANDIDATES: Final = 200
# Ranked block lists live in Redis a day after their last (re)computation.
_RANKING_TTL_MS: Final = 24 * 3600 * 1000
# How long "this order's seats were marked sold" is remembered (retried webhooks come early).
_SOLD_MARKER_MS: Final = 7 * 24 * 3600 * 1000

_NOT_ON_SALE: Final = {
    "cancelled": "This screening has been cancelled.",
    "started": "This screening has already started.",
    "draft": "This screening is not on sale yet.",
}


class HoldRequest(msgspec.Struct, forbid_unknown_fields=True):
    screening_id: Annotated[int, msgspec.Meta(ge=1)]
    seats: Annotated[list[SeatLabel], msgspec.Meta(max_length=1000)] = []
    ga: GASelection | None = None
    best_available: BestAvailable | None = None


class SeatsChange(msgspec.Struct, forbid_unknown_fields=True):
    add: Annotated[list[SeatLabel], msgspec.Meta(max_length=1000)] = []
    remove: Annotated[list[SeatLabel], msgspec.Meta(max_length=1000)] = []


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def parse_token(token: str) -> int:
    match = _TOKEN.match(token)
    if match is None:
        raise NotFound("No live hold with this token.")
    return int(match[1])


def active_key(prefix: str) -> str:
    """Screenings that may have live holds, scored by the time of their latest new hold."""
    return f"{prefix}:holding"


class Holds:
    def __init__(self, inventory: Inventory, settings: Settings) -> None:
        self.inventory = inventory
        self.settings = settings
        self._active_marked: dict[int, float] = {}
        self._rankings: dict[tuple[int, int, str | None, bool], list[tuple[str, ...]]] = {}

    def _keys(self, k: Keys, token: str, user_id: int) -> list[str]:
        return [k.meta, k.seats, k.ga, k.seq, k.log, k.expiry, k.hold(token), k.ttl(token), k.user(user_id)]

    def _share(self) -> str:
        return repr(self.settings.strand_max_share)

    async def _validate(self, screening: int, seats: list[str], path: str) -> None:
        if len(set(seats)) != len(seats):
            raise InvalidInput("A seat is listed twice.", path=path)
        layout = await self.inventory.layout(screening)
        unknown = [s for s in seats if s not in layout.labels]
        if unknown:
            raise UnknownSeats(f"No such seats in this auditorium: {', '.join(unknown)}.", seats=unknown)

    async def _mark_active(self, screening: int) -> None:
        now = time.monotonic()
        if now - self._active_marked.get(screening, 0.0) > _ACTIVE_REFRESH:
            await self.inventory.redis.zadd(
                active_key(self.inventory.prefix), {str(screening): time.time() * 1000}
            )
            self._active_marked[screening] = now

    async def create(
        self,
        who: Principal,
        screening: int,
        seats: list[str],
        ga: GASelection | None = None,
        best: BestAvailable | None = None,
    ) -> HoldResult:
        if best is not None:
            if seats:
                raise InvalidInput("Ask for `seats` or `best_available`, not both.", path="$.best_available")
            return await self._best_available(who, screening, best, ga)
        if not seats and ga is None:
            raise InvalidInput("Choose at least one seat or a GA quantity.", path="$.seats")
        await self._check_request(screening, seats, ga)
        outcome, value = await self._hold(who, screening, [seats], ga)
        if outcome == "ok":
            assert isinstance(value, HoldResult)
            return value
        raise _refusal(value)

    async def _check_request(
        self, screening: int, seats: list[str], ga: GASelection | None, chosen_for_you: int = 0
    ) -> None:
        units = len(seats) + chosen_for_you + (ga.quantity if ga else 0)
        if units > self.settings.hold_max_seats:
            raise TooManySeats(
                f"At most {self.settings.hold_max_seats} seats per hold.", limit=self.settings.hold_max_seats
            )
        await self._validate(screening, seats, "$.seats")
        if ga is not None and ga.area not in (await self.inventory.layout(screening)).areas:
            raise InvalidInput(f"No GA area named {ga.area!r} here.", path="$.ga.area")

    async def _hold(
        self, who: Principal, screening: int, candidates: list[list[str]], ga: GASelection | None
    ) -> tuple[str, Any]:
        """Run the hold script over candidates (best first); ("ok", HoldResult) or (outcome, raw)."""
        await self._mark_active(screening)
        token = f"{screening}.{secrets.token_urlsafe(18)}"
        k = self.inventory.keys(screening)
        s = self.settings
        args: list[Any] = [
            k.channel, token, str(who.user_id), s.hold_ttl * 1000, s.hold_max * 1000,
            s.holds_per_user, self.inventory.loglen, ga.area if ga else "", ga.quantity if ga else 0,
            self._share(), len(candidates),
        ]  # fmt: skip
        for candidate in candidates:
            args += [len(candidate), *candidate]
        keys = [*self._keys(k, token, who.user_id), k.nb]
        result = await self.inventory.run(screening, "hold", keys, args)
        if result[0] != "ok":
            return result[0], result
        return "ok", _hold_result(token, screening, ga, result)

    async def _best_available(
        self, who: Principal, screening: int, best: BestAvailable, ga: GASelection | None
    ) -> HoldResult:
        """The hold script walks the screening's ranked blocks and takes the first free one.

        Doing the choice inside the atomic step means concurrent requests never overlap and never
        fail while a block remains. Only when no block of `count` is left does Python look at the
        map: for the largest block (the error) or for two blocks close together (`allow_split`).
        """
        if ga is not None:
            raise InvalidInput("GA units are held by quantity, not best-available.", path="$.ga")
        await self._check_request(screening, [], None, chosen_for_you=best.count)
        layout = await self.inventory.layout(screening)
        if best.category is not None and best.category not in layout.categories.values():
            raise InvalidInput(f"No {best.category!r} seats here.", path="$.best_available.category")
        ranking = (screening, best.count, best.category, best.accessible)
        blocks = self._rankings.get(ranking)
        if blocks is None:
            blocks = self._rankings[ranking] = ranked_blocks(
                layout.plan, best.count, category=best.category, accessible=best.accessible
            )
        if blocks:
            k = self.inventory.keys(screening)
            ranked = f"{k.base}:ranked:{best.count}:{best.category or '*'}:{'a' if best.accessible else 'g'}"
            for _ in range(2):
                token = f"{screening}.{secrets.token_urlsafe(18)}"
                s = self.settings
                args: list[Any] = [
                    k.channel, token, str(who.user_id), s.hold_ttl * 1000, s.hold_max * 1000,
                    s.holds_per_user, self.inventory.loglen, self._share(),
                ]  # fmt: skip
                await self._mark_active(screening)
                keys = [*self._keys(k, token, who.user_id), k.nb, ranked]
                result = await self.inventory.run(screening, "best", keys, args)
                if result[0] == "nolist":
                    await self._store_ranking(ranked, blocks)
                    continue
                if result[0] == "ok":
                    return _hold_result(token, screening, None, result)
                if result[0] != "none":
                    raise _refusal(result)
                break
        taken = (await self.inventory.snapshot(screening)).seats
        if best.allow_split and best.count > 1:
            rule = layout.strand_rule and (
                len(taken) + best.count <= self.settings.strand_max_share * layout.plan.total
            )
            pairs = best_split(
                layout.plan, taken, best.count, category=best.category, accessible=best.accessible,
                strand_rule=rule, limit=_CANDIDATES,
            )  # fmt: skip
            if pairs:
                outcome, value = await self._hold(who, screening, [list(c) for c in pairs], None)
                if outcome == "ok":
                    assert isinstance(value, HoldResult)
                    return value
                if outcome != "none":
                    raise _refusal(value)
        largest = largest_block(layout.plan, taken, category=best.category, accessible=best.accessible)
        raise NotEnoughAdjacent(
            f"No {best.count} seats together; the largest block free is {largest}.", largest=largest
        )

    async def _store_ranking(self, key: str, blocks: list[tuple[str, ...]]) -> None:
        # Replaced whole in one transaction: two processes storing at once store the same list.
        async with self.inventory.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.rpush(key, *(",".join(block) for block in blocks))
            pipe.pexpire(key, _RANKING_TTL_MS)
            await pipe.execute()

    async def modify(self, who: Principal, token: str, add: list[str], remove: list[str]) -> HoldResult:
        screening = parse_token(token)
        await self._validate(screening, add, "$.add")
        await self._validate(screening, remove, "$.remove")
        k = self.inventory.keys(screening)
        args: list[Any] = [
            k.channel, token, str(who.user_id), self.settings.hold_max_seats, self.inventory.loglen,
            len(add), self._share(), *add, *remove,
        ]  # fmt: skip
        keys = [*self._keys(k, token, who.user_id), k.nb]
        result = await self.inventory.run(screening, "modify", keys, args)
        if result[0] == "too_many":
            raise TooManySeats(
                f"At most {self.settings.hold_max_seats} seats per hold.", limit=self.settings.hold_max_seats
            )
        if result[0] == "not_held":
            raise InvalidInput("These seats are not in this hold.", path="$.remove", seats=result[1:])
        if result[0] != "ok":
            raise _refusal(result)
        return await self.get(who, token)

    async def extend(self, who: Principal, token: str) -> HoldResult:
        screening = parse_token(token)
        k = self.inventory.keys(screening)
        result = await self.inventory.run(
            screening,
            "extend",
            [k.meta, k.hold(token), k.ttl(token), k.expiry, k.user(who.user_id)],
            [token, str(who.user_id), self.settings.hold_ttl * 1000],
        )
        if result[0] != "ok":
            raise _refusal(result)
        area, qty = result[5], result[6]
        return _hold_result(token, screening, GASelection(area, int(qty)) if area else None, result)

    async def release(self, who: Principal, token: str) -> None:
        screening = parse_token(token)
        k = self.inventory.keys(screening)
        args = [k.channel, token, str(who.user_id), self.inventory.loglen]
        result = await self.inventory.run(screening, "release", self._keys(k, token, who.user_id), args)
        if result[0] != "ok":
            raise _refusal(result)

    async def sell(
        self, token: str, owner: int, seats: list[str], ga: GASelection | None, order_ref: str
    ) -> int:
        """Mark an order's seats sold, after PostgreSQL committed the sale; returns the seq (0: no change).

        Once per order (`order_ref`): a repeated call changes nothing. A crash before this
        call is covered by the rebuild from PostgreSQL (see `inventory.SOLD_SOURCES`).
        """
        screening = parse_token(token)
        k = self.inventory.keys(screening)
        keys = [*self._keys(k, token, owner), f"{k.base}:sold:{order_ref}"]
        args: list[Any] = [
            k.channel, token, self.inventory.loglen, ga.area if ga else "", ga.quantity if ga else 0,
            _SOLD_MARKER_MS, *seats,
        ]  # fmt: skip
        result = await self.inventory.run(screening, "sell", keys, args)
        return int(result[1]) if result[0] == "ok" else 0

    async def get(self, who: Principal, token: str) -> HoldResult:
        screening = parse_token(token)
        k = self.inventory.keys(screening)
        async with self.inventory.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.hold(token))
            pipe.pttl(k.ttl(token))
            hold, ttl = await pipe.execute()
        if not hold or hold.get("owner") != str(who.user_id) or ttl <= 0:
            raise NotFound("No live hold with this token.")
        ga = GASelection(hold["area"], int(hold["qty"])) if hold.get("area") else None
        return HoldResult(
            token=token,
            screening_id=screening,
            seats=[s for s in hold["seats"].split(",") if s],
            ga=ga,
            expires_at=_iso(int(hold["expires_ms"])),
            max_expires_at=_iso(int(hold["max_ms"])),
        )


def _hold_result(token: str, screening: int, ga: GASelection | None, result: list[Any]) -> HoldResult:
    """From a successful hold or extend script: ['ok', seq, expires_ms, max_ms, 'A1,A2', …]."""
    return HoldResult(
        token=token,
        screening_id=screening,
        seats=[label for label in result[4].split(",") if label],
        ga=ga,
        expires_at=_iso(int(result[2])),
        max_expires_at=_iso(int(result[3])),
    )


def _refusal(result: list[Any]) -> Exception:
    """The one translation from a script's refusal to our error tree."""
    outcome = result[0]
    if outcome == "taken":
        n_taken = int(result[1])
        taken, blocked = list(result[2 : 2 + n_taken]), list(result[2 + n_taken :])
        lost = taken + blocked
        return SeatTaken(
            f"These seats are no longer available: {', '.join(lost)}.",
            seats=lost,
            taken=taken,
            blocked=blocked,
        )
    if outcome == "not_on_sale":
        reason = str(result[1])
        return NotOnSale(_NOT_ON_SALE.get(reason, "This screening is not on sale."), reason=reason)
    if outcome == "hold_limit":
        return HoldLimit("You already hold seats for this screening: add to that hold or release it first.")
    if outcome == "strand":
        seat = str(result[1])
        return WouldStrandSeat(f"This would leave seat {seat} alone; choose so that it is not.", seat=seat)
    if outcome == "sold_out":
        return SoldOut(f"Only {result[1]} left in this area.", remaining=int(result[1]))
    if outcome == "unknown_area":
        return InvalidInput(f"No GA area named {result[1]!r} here.", path="$.ga.area")
    return NotFound("No live hold with this token.")


def holds_of(rt: Runtime) -> Holds:
    """`rt.holds`; left for live/socket.py, which is being rewritten meanwhile (the merge drops it)."""
    return rt.holds


@documented("Hold seats", body=HoldRequest, responses={201: HoldResult}, auth="customer", tags=("holds",))
async def create_hold(request: Request) -> Response:
    """All or nothing: either every requested seat is held for you, or none is (409 names the lost ones)."""
    who = await require(request)
    body = await read_body(request, HoldRequest)
    holds = runtime(request).holds
    return respond(await holds.create(who, body.screening_id, body.seats, body.ga, body.best_available), 201)


@documented("Show a hold", responses={200: HoldResult}, auth="customer", tags=("holds",))
async def show_hold(request: Request) -> Response:
    who = await require(request)
    return respond(await runtime(request).holds.get(who, request.path_params["token"]))


@documented("Release a hold", responses={204: None}, auth="customer", tags=("holds",))
async def release_hold(request: Request) -> Response:
    who = await require(request)
    await runtime(request).holds.release(who, request.path_params["token"])
    return Response(status_code=204)


@documented(
    "Add or remove seats", body=SeatsChange, responses={200: HoldResult}, auth="customer", tags=("holds",)
)
async def change_seats(request: Request) -> Response:
    who = await require(request)
    body = await read_body(request, SeatsChange)
    holds = runtime(request).holds
    return respond(await holds.modify(who, request.path_params["token"], body.add, body.remove))


@documented("Extend a hold", responses={200: HoldResult}, auth="customer", tags=("holds",))
async def extend_hold(request: Request) -> Response:
    """Pushes the expiry out by the hold TTL again, but never past the hold's maximum lifetime."""
    who = await require(request)
    return respond(await runtime(request).holds.extend(who, request.path_params["token"]))


routes: list[BaseRoute] = [
    Route("/holds", create_hold, methods=["POST"]),
    Route("/holds/{token}", show_hold, methods=["GET"]),
    Route("/holds/{token}", release_hold, methods=["DELETE"]),
    Route("/holds/{token}/seats", change_seats, methods=["POST"]),
    Route("/holds/{token}/extend", extend_hold, methods=["POST"]),
]
