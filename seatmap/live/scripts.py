"""The Lua scripts of the live map, loaded once, and the auto-pipelined way they are called.

The scripts live in files named after what they hold (`seats.lua`, `restock.lua`,
`blocks.lua`, `screening.lua`, `connections.lua`), beside this module, each split into scripts
by `--- name ---` markers. What a file has before its first marker (helpers of that file's scripts) and
`prelude.lua` (helpers of every script: `emit`, `reply`, …) are prepended to each script, so
each is one self-contained EVAL and one atomic step in Redis. `Inventory` owns the calls: one
typed method per script.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any, Final, NamedTuple

import hiredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError as RedisConnectionError,
    NoScriptError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from seatmap import resources
from seatmap.runtime import RedisClient

_FILES: Final = (
    "seats.lua",
    "restock.lua",
    "blocks.lua",
    "screening.lua",
    "connections.lua",
    "account_holds.lua",
    "reconcile.lua",
)
_MARKER: Final = re.compile(r"^--- (\w+) ---\n", re.M)


def _load() -> dict[str, str]:
    prelude = resources.lua("seatmap.live", "prelude.lua")
    sources: dict[str, str] = {}
    for name in _FILES:
        helpers, *parts = _MARKER.split(resources.lua("seatmap.live", name))
        for script, body in zip(parts[::2], parts[1::2], strict=True):
            assert script not in sources, f"two scripts named {script}"
            sources[script] = prelude + helpers + body
    return sources


SOURCES: Final = _load()
# The same scripts for a Redis Cluster: the live channel is published with SPUBLISH (sharded
# pub/sub, Redis 7), so the message stays on the screening's shard (prelude.lua's PUBLISH).
_CLASSIC: Final = "local PUBLISH = 'PUBLISH'\n"
assert all(_CLASSIC in text for text in SOURCES.values())
SHARDED_SOURCES: Final = {
    name: text.replace(_CLASSIC, "local PUBLISH = 'SPUBLISH'\n", 1) for name, text in SOURCES.items()
}


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

    On a Redis Cluster the batch is split by the slot of each call's first key (every script's
    keys share one hash tag, so one slot) into one write per primary, on one of that node's
    connections, the same way. What a node redirects (MOVED, ASK, TRYAGAIN: a failover or a slot
    move) did not run there and goes once more through redis-py's `ClusterPipeline`, which
    follows the redirection and refreshes the slot map.
    """

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self.sources = SHARDED_SOURCES if isinstance(redis, RedisCluster) else SOURCES
        self._sha = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in self.sources.items()}
        self._queue: list[_Call] = []

    def __call__(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._queue:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queue.append(_Call(name, keys, args, future))
        return future

    def _packed(self, calls: list[_Call]) -> bytes:
        """The calls as one write of EVALSHAs: hiredis packs a command in C, ~8x faster than
        redis-py's asyncio connection."""
        return b"".join(
            hiredis.pack_command(("EVALSHA", self._sha[c.name], len(c.keys), *c.keys, *c.args)) for c in calls
        )

    def _flush(self) -> None:
        calls, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(calls))
        _sending.add(task)
        task.add_done_callback(_sending.discard)

    async def _send(self, calls: list[_Call], attempt: int = 1) -> None:
        if isinstance(self.redis, RedisCluster):
            await self._send_cluster(self.redis, calls)
            return
        pool = self.redis.connection_pool
        unknown: list[_Call] = []
        read = 0
        try:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        except Exception as exc:
            _fail(calls, exc)
            return
        try:
            await conn.send_packed_command(self._packed(calls), check_health=False)
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
        await self._eval(unknown)

    async def _send_cluster(self, redis: RedisCluster, calls: list[_Call]) -> None:
        """Each primary's share of the batch written at once on one of its connections, as on
        one Redis: redis-py's `ClusterPipeline` costs several times the CPU per command in
        Python. Calls whose slot is not known here, or that the node redirects (MOVED, ASK,
        TRYAGAIN, CLUSTERDOWN) or whose connection failed before any reply, go through the
        `ClusterPipeline`, which follows redirections and refreshes the slot map."""
        by_node: dict[str, tuple[ClusterNode, list[_Call]]] = {}
        elsewhere: list[_Call] = []
        for call in calls:
            try:
                node = redis.nodes_manager.get_node_from_slot(redis.keyslot(call.keys[0]))
            except (SlotNotCoveredError, IndexError):
                elsewhere.append(call)
                continue
            by_node.setdefault(node.name, (node, []))[1].append(call)
        sent = await asyncio.gather(*(self._send_node(node, share) for node, share in by_node.values()))
        for redirected in sent:
            elsewhere += redirected
        if elsewhere:
            await self._send_pipeline(redis, elsewhere)

    async def _send_node(self, node: ClusterNode, calls: list[_Call]) -> list[_Call]:
        """Returns the calls to send again through the cluster's own routing."""
        try:
            conn = node.acquire_connection()
        except Exception:
            return calls
        unknown: list[_Call] = []
        redirected: list[_Call] = []
        read = 0
        try:
            await conn.send_packed_command(self._packed(calls), check_health=False)
            for call in calls:
                try:
                    reply = await conn.read_response()
                except NoScriptError:
                    unknown.append(call)
                except _REDIRECTED:
                    redirected.append(call)  # not run here: safe to send again
                except ResponseError as exc:
                    _settle(call.future, exception=exc)
                else:
                    _settle(call.future, reply)
                read += 1
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            if read == 0 and isinstance(exc, RedisConnectionError | OSError):
                redirected = list(calls)  # nothing ran that we know of: the cluster routes them
                unknown = []
            else:
                _fail(calls[read:], exc)
                if not isinstance(exc, Exception):
                    raise
        finally:
            node.release(conn)
        await self._eval(unknown)
        return redirected

    async def _send_pipeline(self, redis: RedisCluster, calls: list[_Call]) -> None:
        unknown: list[_Call] = []
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for c in calls:
                    pipe.execute_command("EVALSHA", self._sha[c.name], len(c.keys), *c.keys, *c.args)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            _fail(calls, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):
                unknown.append(call)
            elif isinstance(reply, BaseException):
                _settle(call.future, exception=reply)
            else:
                _settle(call.future, reply)
        await self._eval(unknown)

    async def _eval(self, unknown: list[_Call]) -> None:
        """The calls whose script the server did not know: EVAL with the source (it keeps it)."""
        for call in unknown:
            try:
                reply = await self.redis.eval(self.sources[call.name], len(call.keys), *call.keys, *call.args)
            except Exception as exc:
                _settle(call.future, exception=exc)
            else:
                _settle(call.future, reply)


# A node's answer that the script did not run there (its slot is elsewhere, or mid-migration).
_REDIRECTED: Final = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError


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
