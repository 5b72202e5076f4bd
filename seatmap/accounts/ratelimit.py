"""Fixed-window rate limits in Redis: "at most N attempts per W seconds per account / IP".

Counting and checking are one atomic step (`ratelimit.lua`): an attempt is counted first and
refused when the count is over the limit, so a burst of parallel requests cannot slip past
a check that has not seen the others' increments yet. A window starts with its first attempt
and is not extended by later ones, so a blocked client knows exactly when to come back
(`Retry-After`).

Each counter is its own hash tag (`{prefix}:{limits:KIND:SUBJECT}`), so on a Redis Cluster the
counters spread over every shard instead of all living in one slot (the old `{limits}` tag made
one primary count every login of the deployment). A call with several limits (a login counts
the account and the address) runs the script once per counter, each on its own slot, all in one
round trip: nothing is lost by that, as each counter was always counted on its own and the
answer is the longest wait of those exceeded. On upgrade, windows open under the old key names
are forgotten: at most one window of extra attempts per subject.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from seatmap import resources
from seatmap.errors import RateLimited
from seatmap.runtime import Runtime


@dataclass(frozen=True)
class Limit:
    key: str
    limit: int
    window: int


def limit(rt: Runtime, kind: str, subject: str, *, limit: int, window: int) -> Limit:
    """A limit on one subject (an email, an IP address) for one kind of action."""
    return Limit(rt.key("{limits:" + kind, subject + "}"), limit, window)


async def _run(rt: Runtime, delta: int, limits: tuple[Limit, ...]) -> int:
    script = rt.redis.register_script(resources.lua("seatmap.accounts", "ratelimit.lua"))
    waits = await asyncio.gather(
        *(script(keys=[item.key], args=[delta, item.limit, item.window]) for item in limits)
    )
    return max((int(wait) for wait in waits), default=0)


async def hit(rt: Runtime, *limits: Limit) -> None:
    """Count one attempt against every limit; `RateLimited` (429) if any is exceeded."""
    wait = await _run(rt, 1, limits)
    if wait > 0:
        raise RateLimited(f"Too many attempts; try again in {wait} seconds.", retry_after=wait)


async def forgive(rt: Runtime, *limits: Limit) -> None:
    """Take back the attempt `hit` counted (it turned out fine) from windows still open."""
    await _run(rt, -1, limits)


async def reset(rt: Runtime, *limits: Limit) -> None:
    """Forget every attempt counted so far, e.g. an account's failures after a good login."""
    for item in limits:  # one key per command: each is its own slot on a cluster
        await rt.redis.delete(item.key)
