"""A screening's sellable inventory in Redis: its keys, its scripts, its rebuild from PostgreSQL.

One typed method per Lua script (scripts.py loads them): it builds the script's KEYS from
`Keys` and its ARGV from typed arguments, and decodes the reply into a Struct of replies.py, so
no caller builds a key list or reads a reply by index.

Redis makes the seat map fast; PostgreSQL is the truth. Every script refuses to run on a
screening whose state is not loaded (`["noinit"]`), and `_run` then loads it from PostgreSQL
(blocked seats, sold seats, GA units sold) and runs the script again. So a Redis restart or
flush heals itself on the next touch, and a sold seat never shows as free (invariant 5).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec

from seatmap.db import Pool
from seatmap.errors import NotFound
from seatmap.live import replies
from seatmap.live.replies import NOT_LOADED
from seatmap.live.scripts import Scripts
from seatmap.live.seats import DEFAULT_SWEET_ROW, Place, Plan, plan
from seatmap.live.sold import SoldSource
from seatmap.runtime import RedisClient

_R = TypeVar("_R")
# How long "this order's seats were marked sold" is remembered (retried webhooks come early).
_SOLD_MARKER_MS: Final = 7 * 24 * 3600 * 1000
# How long "this order's seats were freed" is remembered (a retried refund job comes early), for
# screenings loaded before seats remembered their order (restock.lua `free`).
_FREED_MARKER_MS: Final = 7 * 24 * 3600 * 1000
# How long an owner touching a restocked hold is told it expired, rather than not found.
_EXPIRED_MARKER_MS: Final = 3600 * 1000


@dataclass(frozen=True)
class Keys:
    """Every key of one screening shares the hash tag {scr:ID}: one cluster slot, one script."""

    base: str
    meta: str
    seats: str
    ga: str
    seq: str
    log: str
    expiry: str
    viewers: str
    nb: str
    addrs: str
    owners: str
    ga_orders: str
    channel: str

    @classmethod
    def of(cls, prefix: str, screening: int) -> Keys:
        base = f"{prefix}:{{scr:{screening}}}"
        return cls(
            base=base,
            meta=f"{base}:meta",
            seats=f"{base}:seats",
            ga=f"{base}:ga",
            seq=f"{base}:seq",
            log=f"{base}:log",
            expiry=f"{base}:expiry",
            viewers=f"{base}:viewers",
            nb=f"{base}:nb",
            addrs=f"{base}:addrs",
            owners=f"{base}:owners",
            ga_orders=f"{base}:ga_orders",
            channel=f"{base}:chan",
        )

    def hold(self, token: str) -> str:
        return f"{self.base}:hold:{token}"

    def ttl(self, token: str) -> str:
        return f"{self.base}:ttl:{token}"

    def user(self, user_id: int) -> str:
        return f"{self.base}:user:{user_id}"

    def expired(self, token: str) -> str:
        return f"{self.base}:expired:{token}"

    def sold(self, order_ref: str) -> str:
        return f"{self.base}:sold:{order_ref}"

    def freed(self, order_id: int) -> str:
        return f"{self.base}:freed:{order_id}"

    def ranked(self, count: int, category: str | None, accessible: bool) -> str:
        """The best-first list of blocks of `count` seats (see seats.ranked_blocks)."""
        return f"{self.base}:ranked:{count}:{category or '*'}:{'a' if accessible else 'g'}"

    def holding(self, token: str, user_id: int) -> list[str]:
        """The keys of the scripts that change one hold, in their KEYS order."""
        return [
            self.meta, self.seats, self.ga, self.seq, self.log, self.expiry,
            self.hold(token), self.ttl(token), self.user(user_id),
        ]  # fmt: skip


@dataclass(frozen=True)
class HoldTerms:
    """What a new or changed hold is allowed (from Settings): the scripts enforce it atomically."""

    ttl_ms: int
    max_ms: int
    per_user: int
    max_seats: int
    strand_share: float
    per_address: int = 0  # seats held from one client address on one screening (0: no cap)


def ttl_key_pattern(prefix: str) -> re.Pattern[str]:
    """Recognises an expired hold's TTL key in a keyspace notification: (screening, token)."""
    return re.compile(re.escape(prefix) + r":\{scr:(\d+)\}:ttl:(.+)$")


@dataclass(frozen=True)
class Layout:
    """What holds validate against. Immutable once a screening exists (catalog refuses edits)."""

    screening: int
    labels: frozenset[str]
    areas: dict[str, int]
    categories: dict[str, str]
    plan: Plan
    strand_rule: bool


_LAYOUT_SQL: Final = """
SELECT s.id, s.no_single_seats,
       coalesce((SELECT array_agg(name) FROM ga_areas WHERE auditorium_id = s.auditorium_id), '{}') AS areas,
       coalesce((SELECT array_agg(capacity) FROM ga_areas WHERE auditorium_id = s.auditorium_id),
                '{}') AS caps
FROM screenings s WHERE s.id = $1
"""

_SEATS_SQL: Final = """
SELECT se.label, se.row_label, se.x, se.y, se.category, se.accessible, se.companion
FROM seats se JOIN screenings s ON s.auditorium_id = se.auditorium_id
WHERE s.id = $1
"""

_BLOCKED_SQL: Final = "SELECT seat_label FROM seat_blocks WHERE screening_id = $1"


class Inventory:
    """Per-process access to screenings' live state; shared by REST, WebSocket and expiry."""

    def __init__(
        self, redis: RedisClient, pool: Pool, prefix: str, loglen: int, *, sold: SoldSource,
        sweet_row: float = DEFAULT_SWEET_ROW,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.sold = sold  # what PostgreSQL has sold: the map is rebuilt and repaired from it
        self.pool = pool
        self.prefix = prefix
        self.loglen = loglen
        self.sweet_row = sweet_row
        self.scripts = Scripts(redis)
        self._layouts: dict[int, Layout] = {}
        self._layout_locks: dict[int, asyncio.Lock] = {}

    def keys(self, screening: int) -> Keys:
        return Keys.of(self.prefix, screening)

    async def layout(self, screening: int) -> Layout:
        cached = self._layouts.get(screening)
        if cached is not None:
            return cached
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_LAYOUT_SQL, screening)
            if row is None:
                raise NotFound(f"Screening {screening} does not exist.")
            seats = await conn.fetch(_SEATS_SQL, screening)
        places = [
            Place(r["label"], r["row_label"], r["x"], r["y"], r["category"], r["accessible"], r["companion"])
            for r in seats
        ]
        layout = Layout(
            screening=screening,
            labels=frozenset(p.label for p in places),
            areas=dict(zip(row["areas"], row["caps"], strict=True)),
            categories={p.label: p.category for p in places},
            plan=plan(places, self.sweet_row),
            strand_rule=row["no_single_seats"],
        )
        self._layouts[screening] = layout
        return layout

    async def load(self, screening: int) -> None:
        """Copy a screening's durable state from PostgreSQL into Redis, unless already there."""
        layout = await self.layout(screening)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, starts_at FROM screenings WHERE id = $1", screening)
            if row is None:
                raise NotFound(f"Screening {screening} does not exist.")
            blocked = [r["seat_label"] for r in await conn.fetch(_BLOCKED_SQL, screening)]
            durable = await self.sold(conn, screening)
        ga_sold = {area: sum(orders.values()) for area, orders in durable.ga.items()}
        states = {label: "b" for label in blocked}
        states.update({label: "s" for label in durable.seats})
        strand = "1" if layout.strand_rule else "0"
        args: list[Any] = [row["status"], _ms(row["starts_at"]), strand, layout.plan.total, len(states)]
        for label, state in states.items():
            args += [label, state]
        args.append(len(layout.areas))
        for area, capacity in layout.areas.items():
            args += [area, capacity, ga_sold.get(area, 0)]
        neighbours = layout.plan.neighbours()
        args.append(len(neighbours))
        for label, (left, right) in neighbours.items():
            args += [label, f"{left}|{right}"]
        args.append(len(durable.seats))
        for label, seat in durable.seats.items():
            args += [label, seat.order]
        ga_orders = [(order, units) for orders in durable.ga.values() for order, units in orders.items()]
        args.append(len(ga_orders))
        for order, units in ga_orders:
            args += [order, units]
        k = self.keys(screening)
        await self._call("init", _LOADED, [k.meta, k.seats, k.ga, k.seq, k.nb, k.owners, k.ga_orders], args)

    async def _call(
        self, name: str, decoder: msgspec.json.Decoder[_R], keys: list[str], args: list[Any]
    ) -> _R:
        return decoder.decode(await self.scripts(name, keys, args))

    async def _run(
        self, screening: int, name: str, decoder: msgspec.json.Decoder[_R], keys: list[str], args: list[Any]
    ) -> _R:
        """Run a script; if the screening is not loaded in Redis, load it and run it again."""
        raw = await self.scripts(name, keys, args)
        if raw == NOT_LOADED:
            await self.load(screening)
            raw = await self.scripts(name, keys, args)
        return decoder.decode(raw)

    async def log_after(self, keys: Keys, seq: int) -> list[tuple[int, str]]:
        """Recovery-log entries after `seq`, oldest first, as (seq, delta text)."""
        entries: Any = await self.redis.xrange(keys.log, min=f"{seq + 1}-0", max="+", count=10_000)
        return [(int(entry_id.split("-")[0]), fields["d"]) for entry_id, fields in entries]

    # ---- holds (seats.lua) ---------------------------------------------------------------------

    async def hold(
        self, screening: int, token: str, owner: int, terms: HoldTerms, candidates: list[list[str]],
        ga_area: str = "", ga_units: int = 0, address: str = "",
    ) -> replies.HoldReply:  # fmt: skip
        """A new hold of the first candidate that is free and strands no seat (one candidate: those seats).

        `address` (the client's, "" for none) is counted against `terms.per_address` in the same step.
        """
        k = self.keys(screening)
        args: list[Any] = [
            k.channel, token, owner, terms.ttl_ms, terms.max_ms, terms.per_user, self.loglen, ga_area,
            ga_units, repr(terms.strand_share), address, terms.per_address, len(candidates),
        ]  # fmt: skip
        for candidate in candidates:
            args += [len(candidate), *candidate]
        return await self._run(screening, "hold", _HOLD, [*k.holding(token, owner), k.nb, k.addrs], args)

    async def best(
        self, screening: int, token: str, owner: int, terms: HoldTerms, ranked: str, count: int,
        address: str = "",
    ) -> replies.BestReply:  # fmt: skip
        """A new hold of the first free block (of `count` seats) in the ranked list at `ranked`."""
        k = self.keys(screening)
        args: list[Any] = [
            k.channel, token, owner, terms.ttl_ms, terms.max_ms, terms.per_user, self.loglen,
            repr(terms.strand_share), address, terms.per_address, count,
        ]  # fmt: skip
        keys = [*k.holding(token, owner), k.nb, ranked, k.addrs]
        return await self._run(screening, "best", _BEST, keys, args)

    async def modify(
        self, screening: int, token: str, owner: int, terms: HoldTerms, add: list[str], remove: list[str]
    ) -> replies.ModifyReply:
        k = self.keys(screening)
        args: list[Any] = [
            k.channel, token, owner, terms.max_seats, self.loglen, len(add), repr(terms.strand_share),
            terms.per_address, *add, *remove,
        ]  # fmt: skip
        keys = [*k.holding(token, owner), k.nb, k.expired(token), k.addrs]
        return await self._run(screening, "modify", _MODIFY, keys, args)

    async def extend(self, screening: int, token: str, owner: int, ttl_ms: int) -> replies.ExtendReply:
        k = self.keys(screening)
        keys = [k.meta, k.hold(token), k.ttl(token), k.expiry, k.user(owner), k.expired(token)]
        return await self._run(screening, "extend", _EXTEND, keys, [token, owner, ttl_ms])

    async def release(self, screening: int, token: str, owner: int) -> replies.ReleaseReply:
        k = self.keys(screening)
        keys = [*k.holding(token, owner), k.expired(token), k.addrs]
        return await self._run(screening, "release", _RELEASE, keys, [k.channel, token, owner, self.loglen])

    async def sell(
        self, screening: int, token: str, owner: int, seats: list[str], ga_area: str, ga_units: int,
        order_ref: str,
    ) -> replies.MarkedReply:  # fmt: skip
        """Mark an order's seats sold to it, once per `order_ref` (a repeat answers Done)."""
        k = self.keys(screening)
        keys = [*k.holding(token, owner), k.sold(order_ref), k.addrs, k.owners, k.ga_orders]
        args: list[Any] = [k.channel, token, self.loglen, ga_area, ga_units, _SOLD_MARKER_MS, order_ref]
        args += seats
        return await self._run(screening, "sell", _MARKED, keys, args)

    # ---- back on sale (restock.lua) ------------------------------------------------------------

    async def restock(self, screening: int, token: str) -> replies.RestockReply:
        """Free an expired hold's seats; Restocked only for the one call that did it."""
        k = self.keys(screening)
        # The user index key is per user; the script only needs its name to ZREM the token.
        owner: Any = await self.redis.hget(k.hold(token), "owner")
        keys = [*k.holding(token, int(owner or 0)), k.expired(token), k.addrs]
        args = [k.channel, token, self.loglen, _EXPIRED_MARKER_MS]
        return await self._run(screening, "restock", _RESTOCK, keys, args)

    async def restock_due(self, screening: int, tokens: list[str]) -> replies.RestockedDue:
        """Free the seats of these holds whose deadline passed, in one step and one delta (the
        sweeper's batch); the reply has the lag of each hold this call restocked."""
        k = self.keys(screening)
        async with self.redis.pipeline(transaction=False) as pipe:
            for token in tokens:
                pipe.hget(k.hold(token), "owner")
            owners: list[str | None] = await pipe.execute()
        keys = [k.meta, k.seats, k.ga, k.seq, k.log, k.expiry, k.addrs]
        for token, owner in zip(tokens, owners, strict=True):
            keys += [k.hold(token), k.ttl(token), k.user(int(owner or 0)), k.expired(token)]
        args = [k.channel, self.loglen, _EXPIRED_MARKER_MS, *tokens]
        return _RESTOCKED_DUE.decode(await self.scripts("restock_due", keys, args))

    async def drop_holds(self, screening: int) -> int:
        """Release every live hold of the screening in one delta; returns how many there were."""
        k = self.keys(screening)
        tokens = [str(token) for token in await self.redis.zrange(k.expiry, 0, -1)]
        if not tokens:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for token in tokens:
                pipe.hget(k.hold(token), "owner")
            owners: list[str | None] = await pipe.execute()
        keys = [k.meta, k.seats, k.ga, k.seq, k.log, k.expiry, k.addrs]
        for token, owner in zip(tokens, owners, strict=True):
            keys += [k.hold(token), k.ttl(token), k.user(int(owner or 0))]
        dropped = await self._run(screening, "drop_holds", _DROPPED, keys, [k.channel, self.loglen, *tokens])
        return dropped.holds

    async def free(
        self, screening: int, order_id: int, seats: list[str], ga_area: str, ga_units: int
    ) -> replies.MarkedReply | None:
        """A refunded order's seats back on sale: of `seats` (those PostgreSQL says have no live
        ticket), the ones still sold to this order in Redis, and its GA units while still counted
        for it; None if the screening is not loaded (then nothing is needed: a load from
        PostgreSQL shows them free)."""
        k = self.keys(screening)
        keys = [k.meta, k.seats, k.ga, k.seq, k.log, k.freed(order_id), k.owners, k.ga_orders]
        args: list[Any] = [k.channel, self.loglen, ga_area, ga_units, _FREED_MARKER_MS, str(order_id), *seats]
        raw = await self.scripts("free", keys, args)
        return None if raw == NOT_LOADED else _MARKED.decode(raw)

    # ---- the screening as a whole (screening.lua, blocks.lua) ----------------------------------

    async def snapshot(self, screening: int) -> SeatMap:
        k = self.keys(screening)
        return await self._run(screening, "snapshot", _SEAT_MAP, [k.meta, k.seats, k.ga, k.seq], [])

    async def block(self, screening: int, labels: list[str]) -> list[str]:
        """Mark free seats blocked; returns the seats that are held or sold instead (nothing changed then)."""
        k = self.keys(screening)
        keys, args = [k.meta, k.seats, k.seq, k.log], [k.channel, self.loglen, *labels]
        result = await self._run(screening, "block", _BLOCK, keys, args)
        return result.seats if isinstance(result, replies.Busy) else []

    async def unblock(self, screening: int, labels: list[str]) -> None:
        k = self.keys(screening)
        keys, args = [k.meta, k.seats, k.seq, k.log], [k.channel, self.loglen, *labels]
        await self._run(screening, "unblock", _CHANGED, keys, args)

    async def set_status(self, screening: int, status: str, starts_at: datetime) -> int:
        """Change the live status (e.g. cancelled) and tell every viewer; returns the seq."""
        k = self.keys(screening)
        args = [k.channel, status, _ms(starts_at), self.loglen]
        changed = await self._run(screening, "status", _CHANGED, [k.meta, k.seq, k.log], args)
        return changed.seq


class SeatMap(msgspec.Struct, array_like=True, frozen=True):
    """A screening's live state at `seq`: seats that are not free (held, sold, blocked), GA units left."""

    seq: int
    seats: dict[str, str]
    ga: dict[str, int]
    status: str


_HOLD: Final[msgspec.json.Decoder[replies.HoldReply]] = msgspec.json.Decoder(replies.HoldReply)
_BEST: Final[msgspec.json.Decoder[replies.BestReply]] = msgspec.json.Decoder(replies.BestReply)
_MODIFY: Final[msgspec.json.Decoder[replies.ModifyReply]] = msgspec.json.Decoder(replies.ModifyReply)
_EXTEND: Final[msgspec.json.Decoder[replies.ExtendReply]] = msgspec.json.Decoder(replies.ExtendReply)
_RELEASE: Final[msgspec.json.Decoder[replies.ReleaseReply]] = msgspec.json.Decoder(replies.ReleaseReply)
_RESTOCK: Final[msgspec.json.Decoder[replies.RestockReply]] = msgspec.json.Decoder(replies.RestockReply)
_MARKED: Final[msgspec.json.Decoder[replies.MarkedReply]] = msgspec.json.Decoder(replies.MarkedReply)
_RESTOCKED_DUE: Final = msgspec.json.Decoder(replies.RestockedDue)
_BLOCK: Final[msgspec.json.Decoder[replies.BlockReply]] = msgspec.json.Decoder(replies.BlockReply)
_CHANGED: Final = msgspec.json.Decoder(replies.Changed)
_DROPPED: Final = msgspec.json.Decoder(replies.Dropped)
_LOADED: Final = msgspec.json.Decoder(replies.Loaded)
_SEAT_MAP: Final = msgspec.json.Decoder(SeatMap)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
