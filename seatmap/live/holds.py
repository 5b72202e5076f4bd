"""Holds: a user's temporary claim on seats (or GA units) of one screening, in Redis.

Every operation is one Lua script in seats.lua (called through `Inventory`'s typed methods), so
a multi-seat hold is all-or-nothing (invariant 2) and its delta is numbered and published in
the same step (invariant 3). The REST routes here and the WebSocket commands in socket.py call
the same `Holds` methods, and `refusal` turns a script's refusal into the one error both render.

A token names its screening (`42.<random>`), so a token alone finds its keys; the random
part has 144 bits, so tokens cannot be guessed.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts.auth import Principal, require
from seatmap.accounts.verification import require_verified
from seatmap.api import Id, documented, read_body, respond
from seatmap.errors import (
    AddressHoldLimit,
    HoldExpired,
    HoldLimit,
    InvalidInput,
    NotEnoughAdjacent,
    NotFound,
    NotOnSale,
    SeatmapError,
    SeatTaken,
    SoldOut,
    TooManySeats,
    UnknownSeats,
    WouldStrandSeat,
)
from seatmap.live import replies
from seatmap.live.account_holds import AccountHolds
from seatmap.live.inventory import HoldTerms, Inventory
from seatmap.live.protocol import BestAvailable, GASelection, HoldResult, SeatLabel
from seatmap.live.seats import best_split, largest_block, ranked_blocks
from seatmap.runtime import runtime
from seatmap.settings import Settings

_TOKEN: Final = re.compile(r"^(\d{1,18})\.([A-Za-z0-9_-]{16,64})$")
# The sweeper forgets a screening this long after its last new hold (see expiry.py).
ACTIVE_MARGIN_MS: Final = 60_000
_ACTIVE_REFRESH: Final = 10.0
_CANDIDATES: Final = 200
# Ranked block lists live in Redis a day after their last (re)computation.
_RANKING_TTL_MS: Final = 24 * 3600 * 1000

HOLDS: Final = Counter(
    "seatmap_holds", "Attempts to hold seats, by outcome: created or why not.", ["outcome"]
)
# Error code -> outcome: every refusal a hold attempt can meet has its own outcome.
HOLD_OUTCOMES: Final = {
    "seat_taken": "taken",
    "hold_limit": "limit",
    "account_hold_limit": "account_limit",
    "address_hold_limit": "address_limit",
    "would_strand_seat": "strand",
    "not_enough_adjacent": "no_block",
    "sold_out": "sold_out",
    "not_on_sale": "not_on_sale",
    "too_many_seats": "too_many",
    "invalid_input": "invalid",
    "unknown_seats": "invalid",
    "not_found": "invalid",  # an unknown screening
}
for _outcome in ("created", "error", *HOLD_OUTCOMES.values()):
    HOLDS.labels(_outcome)  # exported at 0 from the start, so a rate is defined
_CREATED: Final = HOLDS.labels("created")

_NOT_ON_SALE: Final = {
    "cancelled": "This screening has been cancelled.",
    "started": "This screening has already started.",
    "draft": "This screening is not on sale yet.",
}


class HoldRequest(msgspec.Struct, forbid_unknown_fields=True):
    screening_id: Id
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
        self.terms = HoldTerms(
            ttl_ms=settings.hold_ttl * 1000,
            max_ms=settings.hold_max * 1000,
            per_user=settings.holds_per_user,
            max_seats=settings.hold_max_seats,
            strand_share=settings.strand_max_share,
            per_address=settings.hold_seats_per_address,
        )
        self.accounts = AccountHolds(inventory, settings.holds_per_account, self.terms.max_ms)
        self._active_marked: dict[int, float] = {}
        self._rankings: dict[tuple[int, int, str | None, bool], list[tuple[str, ...]]] = {}

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
        address: str | None = None,
    ) -> HoldResult:
        """A new hold, all or nothing; every attempt is counted in `seatmap_holds_total` by outcome.

        `address` is the client's, for a request from the public (REST, WebSocket): then the
        account's holds across screenings are capped (SEATMAP_HOLDS_PER_ACCOUNT, account_holds.py) and
        the seats held from that address on this screening (SEATMAP_HOLD_SEATS_PER_ADDRESS, in
        the hold script's atomic step). Without one (the box office) neither cap applies.
        """
        token = f"{screening}.{secrets.token_urlsafe(18)}"
        reserved = False
        try:
            if best is not None and seats:
                raise InvalidInput("Ask for `seats` or `best_available`, not both.", path="$.best_available")
            if address is not None:  # counted (and listed by GET /api/holds) even with no cap
                await self.accounts.reserve(who.user_id, token)
                reserved = True
            if best is not None:
                made = await self._best_available(who, screening, best, ga, token, address or "")
            else:
                made = await self._create(who, screening, seats, ga, token, address or "")
        except BaseException as exc:
            if reserved:
                await self.accounts.forget(who.user_id, token)
            if isinstance(exc, HoldLimit):
                await self._name_hold(who, exc)
            if isinstance(exc, SeatmapError):
                HOLDS.labels(HOLD_OUTCOMES.get(exc.code, "error")).inc()
            elif isinstance(exc, Exception):
                HOLDS.labels("error").inc()
            raise
        if reserved:
            await self.accounts.made(who.user_id, token)
        _CREATED.inc()
        return made

    async def _name_hold(self, who: Principal, error: HoldLimit) -> None:
        """The 409 names the hold in the way (the caller's own: the script read the caller's
        holds), so a client that lost its token takes that hold up instead of waiting it out."""
        token = error.details.get("token")
        if isinstance(token, str):
            try:
                held = await self.get(who, token)
            except SeatmapError:
                return  # it ended meanwhile: the token and screening still say which it was
            error.details.update(seats=held.seats, expires_at=held.expires_at)

    async def _create(
        self, who: Principal, screening: int, seats: list[str], ga: GASelection | None, token: str,
        address: str,
    ) -> HoldResult:  # fmt: skip
        if not seats and ga is None:
            raise InvalidInput("Choose at least one seat or a GA quantity.", path="$.seats")
        await self._check_request(screening, seats, ga)
        reply = await self._hold(who, screening, [seats], ga, token, address)
        if isinstance(reply, replies.Held):
            return _hold_result(token, reply, screening, ga)
        assert not isinstance(reply, replies.NoneFree), "one candidate: the script names its refusal"
        raise refusal(reply)

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
        self, who: Principal, screening: int, candidates: list[list[str]], ga: GASelection | None,
        token: str, address: str,
    ) -> replies.HoldReply:  # fmt: skip
        """Run the hold script over candidates (best first) for a new hold named `token`."""
        await self._mark_active(screening)
        area, units = (ga.area, ga.quantity) if ga else ("", 0)
        return await self.inventory.hold(
            screening, token, who.user_id, self.terms, candidates, area, units, address
        )

    async def _best_available(
        self, who: Principal, screening: int, best: BestAvailable, ga: GASelection | None, token: str,
        address: str,
    ) -> HoldResult:  # fmt: skip
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
            ranked = self.inventory.keys(screening).ranked(best.count, best.category, best.accessible)
            for _ in range(2):  # the token is reused: a refusal made nothing
                await self._mark_active(screening)
                reply = await self.inventory.best(
                    screening, token, who.user_id, self.terms, ranked, best.count, address
                )
                if isinstance(reply, replies.NoList):
                    await self._store_ranking(ranked, blocks)
                    continue
                if isinstance(reply, replies.Held):
                    return _hold_result(token, reply, screening, None)
                if not isinstance(reply, replies.NoneFree):
                    raise refusal(reply)
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
                held = await self._hold(who, screening, [list(c) for c in pairs], None, token, address)
                if isinstance(held, replies.Held):
                    return _hold_result(token, held, screening, None)
                if not isinstance(held, replies.NoneFree):
                    raise refusal(held)
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
        reply = await self.inventory.modify(screening, token, who.user_id, self.terms, add, remove)
        if not isinstance(reply, replies.Modified):
            raise refusal(reply)
        return await self.get(who, token)

    async def extend(self, who: Principal, token: str) -> HoldResult:
        screening = parse_token(token)
        reply = await self.inventory.extend(screening, token, who.user_id, self.terms.ttl_ms)
        if not isinstance(reply, replies.Extended):
            raise refusal(reply)
        return HoldResult(
            token=token,
            screening_id=screening,
            seats=reply.seats,
            ga=GASelection(reply.area, reply.qty) if reply.area else None,
            expires_at=_iso(reply.expires_ms),
            max_expires_at=_iso(reply.max_ms),
        )

    async def release(self, who: Principal, token: str) -> None:
        reply = await self.inventory.release(parse_token(token), token, who.user_id)
        if not isinstance(reply, replies.Changed):
            raise refusal(reply)
        # It no longer counts against the account (it would stop counting anyway: account_holds.py).
        await self.accounts.forget(who.user_id, token)

    async def release_all(self, user_id: int) -> int:
        """Release every live hold of the account (it was disabled), so its seats are for sale
        again at once; returns how many were released. The account's own index only knows the
        holds made under its cap, so each screening that may have holds is asked too (its
        per-user index): a rare admin action, one pipelined round trip per 500 screenings."""
        redis = self.inventory.redis
        tokens = {str(t) for t in await redis.zrange(self.accounts.key(user_id), 0, -1)}
        active = [str(s) for s in await redis.zrange(active_key(self.inventory.prefix), 0, -1)]
        for start in range(0, len(active), 500):
            async with redis.pipeline(transaction=False) as pipe:
                for screening in active[start : start + 500]:
                    pipe.zrange(self.inventory.keys(int(screening)).user(user_id), 0, -1)
                for found in await pipe.execute():
                    tokens.update(found)
        released = 0
        for token in sorted(tokens):
            if _TOKEN.match(token) is None:
                continue
            reply = await self.inventory.release(parse_token(token), token, user_id)
            released += isinstance(reply, replies.Changed)
        await self.accounts.forget(user_id, *tokens)
        return released

    async def sell(
        self, token: str, owner: int, seats: list[str], ga: GASelection | None, order_ref: str
    ) -> int:
        """Mark an order's seats sold, after PostgreSQL committed the sale; returns the seq (0: no change).

        Once per order (`order_ref`): a repeated call changes nothing. A crash before this
        call is covered by the rebuild from PostgreSQL (see `Inventory.sold`).
        """
        area, units = (ga.area, ga.quantity) if ga else ("", 0)
        reply = await self.inventory.sell(parse_token(token), token, owner, seats, area, units, order_ref)
        await self.accounts.forget(owner, token)
        return reply.seq if isinstance(reply, replies.Changed) else 0

    async def get(self, who: Principal, token: str) -> HoldResult:
        screening = parse_token(token)
        k = self.inventory.keys(screening)
        async with self.inventory.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.hold(token))
            pipe.pttl(k.ttl(token))
            pipe.get(k.expired(token))
            hold, ttl, expired_owner = await pipe.execute()
        mine = hold.get("owner") == str(who.user_id)
        if (mine and ttl <= 0) or (not mine and expired_owner == str(who.user_id)):
            raise refusal(replies.Expired())
        if not mine:
            raise refusal(replies.Gone())
        ga = GASelection(hold["area"], int(hold["qty"])) if hold.get("area") else None
        return HoldResult(
            token=token,
            screening_id=screening,
            seats=[s for s in hold["seats"].split(",") if s],
            ga=ga,
            expires_at=_iso(int(hold["expires_ms"])),
            max_expires_at=_iso(int(hold["max_ms"])),
        )


def _hold_result(token: str, held: replies.Held, screening: int, ga: GASelection | None) -> HoldResult:
    return HoldResult(
        token=token,
        screening_id=screening,
        seats=held.seats,
        ga=ga,
        expires_at=_iso(held.expires_ms),
        max_expires_at=_iso(held.max_ms),
    )


def refusal(reply: replies.Refusal) -> SeatmapError:
    """The one translation from a script's refusal to our error tree (REST and WebSocket alike)."""
    match reply:
        case replies.Taken(taken, blocked):
            lost = taken + blocked
            return SeatTaken(
                f"These seats are no longer available: {', '.join(lost)}.",
                seats=lost,
                taken=taken,
                blocked=blocked,
            )
        case replies.NotOnSale(reason):
            return NotOnSale(_NOT_ON_SALE.get(reason, "This screening is not on sale."), reason=reason)
        case replies.HoldLimit(tokens):
            named = {"token": tokens[0], "screening_id": int(tokens[0].partition(".")[0])} if tokens else {}
            return HoldLimit(
                "You already hold seats for this screening: add to that hold or release it first.",
                **named,
            )
        case replies.Strand(seat):
            return WouldStrandSeat(
                f"This would leave seat {seat} alone; choose so that it is not.", seat=seat
            )
        case replies.SoldOut(remaining):
            return SoldOut(f"Only {remaining} left in this area.", remaining=remaining)
        case replies.UnknownArea(area):
            return InvalidInput(f"No GA area named {area!r} here.", path="$.ga.area")
        case replies.AddressLimit(limit, held):
            return AddressHoldLimit(
                f"At most {limit} seats of this screening may be held from one address ({held} are now).",
                limit=limit,
                held=held,
            )
        case replies.TooMany(_, limit):
            return TooManySeats(f"At most {limit} seats per hold.", limit=limit)
        case replies.NotHeld(seats):
            return InvalidInput("These seats are not in this hold.", path="$.remove", seats=seats)
        case replies.Expired():
            return HoldExpired("Your hold has expired; its seats went back on sale.")
        case replies.Gone():
            return NotFound("No live hold with this token.")


@documented(
    "Hold seats",
    body=HoldRequest,
    responses={201: HoldResult, 403: None, 404: None, 409: None},
    auth="customer",
    tags=("holds",),
)
async def create_hold(request: Request) -> Response:
    """All or nothing: either every requested seat is held for you, or none is (409 names the lost ones).
    Needs a verified email (403 `email_unverified`)."""
    who = await require(request)
    body = await read_body(request, HoldRequest)
    rt = runtime(request)
    await require_verified(rt, who)
    address = request.client.host if request.client else "unknown"
    made = await rt.holds.create(who, body.screening_id, body.seats, body.ga, body.best_available, address)
    return respond(made, 201)


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
