"""A screening's sellable inventory in Redis: its keys, its scripts, its rebuild from PostgreSQL.

Redis makes the seat map fast; PostgreSQL is the truth. Every script refuses to run on a
screening whose state is not loaded (`noinit`), and `run` then loads it from PostgreSQL
(blocked seats, sold seats, GA units sold) and runs the script again. So a Redis restart or
flush heals itself on the next touch, and a sold seat never shows as free (invariant 5).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, NewType

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError, NoScriptError, ResponseError

from seatmap.db import Pool
from seatmap.errors import NotFound
from seatmap.live.seats import DEFAULT_SWEET_ROW, Place, Plan, plan

ScreeningId = NewType("ScreeningId", int)

# What the hash stores -> what clients see. Held seats carry their token ("h:<token>").
PUBLIC_STATE: Final = {"s": "sold", "b": "blocked"}


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
            channel=f"{base}:chan",
        )

    def hold(self, token: str) -> str:
        return f"{self.base}:hold:{token}"

    def ttl(self, token: str) -> str:
        return f"{self.base}:ttl:{token}"

    def user(self, user_id: int) -> str:
        return f"{self.base}:user:{user_id}"


def ttl_key_pattern(prefix: str) -> re.Pattern[str]:
    """Recognises an expired hold's TTL key in a keyspace notification: (screening, token)."""
    return re.compile(re.escape(prefix) + r":\{scr:(\d+)\}:ttl:(.+)$")


def _load_scripts() -> dict[str, str]:
    text = importlib.resources.files("seatmap.live").joinpath("holds.lua").read_text()
    blocks: dict[str, str] = {}
    for match in re.finditer(r"^--- (\w+) ---\n(.*?)(?=^--- \w+ ---\n|\Z)", text, re.S | re.M):
        blocks[match[1]] = match[2]
    prelude = blocks.pop("prelude")
    return {name: prelude + body for name, body in blocks.items()}


SCRIPT_SOURCES: Final = _load_scripts()


class Scripts:
    """The Lua scripts, auto-pipelined: calls made in one event-loop turn go to Redis together.

    Under load most of a hold's cost was redis-py's per-command path (pool checkout, retry
    and timeout wrappers, packing), not Redis. Here the calls queued while the loop was busy
    are written at once on one connection and their replies read in order: one checkout and
    one write for the batch. Each script is still atomic on its own; nothing waits for a
    batch to fill, so a lone call goes out on the next turn. EVALSHA, falling back to EVAL
    for scripts the server does not know (a restart, SCRIPT FLUSH).

    A connection that fails before the first reply is read is replaced and the batch sent once
    more (as redis-py retries a command); one that fails mid-batch fails the calls whose replies
    were not read: whether such a script ran is unknown, and it is not sent again.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._sha = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPT_SOURCES.items()}
        self._queue: list[_Call] = []

    def __call__(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._queue:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queue.append(_Call(name, keys, args, future))
        return future

    def _flush(self) -> None:
        calls, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(calls))
        _sending.add(task)
        task.add_done_callback(_sending.discard)

    async def _send(self, calls: list[_Call], attempt: int = 1) -> None:
        pool = self.redis.connection_pool
        unknown: list[_Call] = []
        read = 0
        try:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        except Exception as exc:
            _fail(calls, exc)
            return
        try:
            packed = b"".join(
                # hiredis packs a command in C, ~8x faster than redis-py's asyncio connection.
                hiredis.pack_command(("EVALSHA", self._sha[c.name], len(c.keys), *c.keys, *c.args))
                for c in calls
            )
            await conn.send_packed_command(packed, check_health=False)
            for call in calls:
                try:
                    reply = await conn.read_response()
                except NoScriptError:
                    unknown.append(call)
                except ResponseError as exc:
                    _settle(call.future, exception=exc)
                else:
                    _settle(call.future, reply)
                read += 1
        except BaseException as exc:
            # The connection is out of step with its replies: it must not be reused as it is.
            await conn.disconnect(nowait=True)
            if read == 0 and attempt == 1 and isinstance(exc, RedisConnectionError | OSError):
                # A pooled connection that died idle (Redis restarted, a proxy dropped it):
                # once more on a fresh one, as redis-py retries its own commands.
                retry = True
            else:
                retry = False
                _fail(calls[read:], exc)
                if not isinstance(exc, Exception):
                    raise
        else:
            retry = False
        finally:
            await pool.release(conn)
        if retry:
            await self._send(calls, attempt=2)
            return
        for call in unknown:
            try:
                source = SCRIPT_SOURCES[call.name]
                reply = await self.redis.eval(source, len(call.keys), *call.keys, *call.args)
            except Exception as exc:
                _settle(call.future, exception=exc)
            else:
                _settle(call.future, reply)


class _Call(NamedTuple):
    name: str
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]


_sending: Final[set[asyncio.Future[None]]] = set()  # batches in flight (tasks need a reference)


def _settle(
    future: asyncio.Future[Any], result: Any = None, *, exception: BaseException | None = None
) -> None:
    if future.done():  # the caller gave up (cancelled); the script ran or not, as for any command
        return
    if isinstance(exception, asyncio.CancelledError):
        future.cancel()
    elif exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _fail(calls: list[_Call], exc: BaseException) -> None:
    for call in calls:
        _settle(call.future, exception=exc)


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

# Sold inventory. Tickets arrive with checkout; until then nothing is sold. This is the hook
# the rebuild consults, so once tickets exist a sold seat survives any loss of Redis state.
SOLD_SOURCES: list[Callable[[Any, int], Awaitable[tuple[list[str], dict[str, int]]]]] = []


class Inventory:
    """Per-process access to screenings' live state; shared by REST, WebSocket and expiry."""

    def __init__(
        self, redis: Redis, pool: Pool, prefix: str, loglen: int, sweet_row: float = DEFAULT_SWEET_ROW
    ) -> None:
        self.redis = redis
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
            sold: list[str] = []
            ga_sold: dict[str, int] = {}
            for source in SOLD_SOURCES:
                seats, areas = await source(conn, screening)
                sold.extend(seats)
                for area, units in areas.items():
                    ga_sold[area] = ga_sold.get(area, 0) + units
        states = {label: "b" for label in blocked}
        states.update({label: "s" for label in sold})
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
        k = self.keys(screening)
        await self.scripts("init", [k.meta, k.seats, k.ga, k.seq, k.nb], args)

    async def run(self, screening: int, name: str, keys: list[str], args: list[Any]) -> list[Any]:
        """Run a script; if the screening is not loaded in Redis, load it and run it again."""
        result: list[Any] = await self.scripts(name, keys, args)
        if result and result[0] == "noinit":
            await self.load(screening)
            result = await self.scripts(name, keys, args)
        return result

    async def log_after(self, keys: Keys, seq: int) -> list[tuple[int, str]]:
        """Recovery-log entries after `seq`, oldest first, as (seq, delta text)."""
        entries: Any = await self.redis.xrange(keys.log, min=f"{seq + 1}-0", max="+", count=10_000)
        return [(int(entry_id.split("-")[0]), fields["d"]) for entry_id, fields in entries]

    async def snapshot(self, screening: int) -> SeatMap:
        k = self.keys(screening)
        raw = await self.run(screening, "snapshot", [k.meta, k.seats, k.ga, k.seq], [])
        seq, seats_flat, ga_flat, meta_flat = raw
        meta = dict(zip(meta_flat[::2], meta_flat[1::2], strict=True))
        taken = dict(zip(ga_flat[::2], map(int, ga_flat[1::2]), strict=True))
        seats = {
            label: PUBLIC_STATE.get(state, "held")
            for label, state in zip(seats_flat[::2], seats_flat[1::2], strict=True)
        }
        ga = {
            field[4:]: int(capacity) - taken.get(field[4:], 0)
            for field, capacity in meta.items()
            if field.startswith("cap:")
        }
        return SeatMap(int(seq), seats, ga, meta.get("status", "scheduled"))

    async def block(self, screening: int, labels: list[str]) -> list[str]:
        """Mark free seats blocked; returns the seats that are held or sold instead (nothing changed then)."""
        k = self.keys(screening)
        result = await self.run(
            screening, "block", [k.meta, k.seats, k.seq, k.log], [k.channel, self.loglen, *labels]
        )
        return [] if result[0] == "ok" else list(result[1:])

    async def unblock(self, screening: int, labels: list[str]) -> None:
        k = self.keys(screening)
        await self.run(
            screening, "unblock", [k.meta, k.seats, k.seq, k.log], [k.channel, self.loglen, *labels]
        )

    async def set_status(self, screening: int, status: str, starts_at: datetime) -> int:
        """Change the live status (e.g. cancelled) and tell every viewer; returns the seq."""
        k = self.keys(screening)
        result = await self.run(
            screening, "status", [k.meta, k.seq, k.log], [k.channel, status, _ms(starts_at), self.loglen]
        )
        return int(result[1])


@dataclass(frozen=True)
class SeatMap:
    seq: int
    seats: dict[str, str]
    ga: dict[str, int]
    status: str


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
