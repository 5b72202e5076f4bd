"""Fixed-window rate limits in Redis: "at most N attempts per W seconds per account / IP".

Counting and checking are one atomic step (`ratelimit.lua`): an attempt is counted first and
refused when the count is over the limit, so a burst of parallel requests cannot slip past
a check that has not seen the others' increments yet. A window starts with its first attempt
and is not extended by later ones, so a blocked client knows exactly when to come back
(`Retry-After`).

Keys carry the hash tag `{limits}` so one call's keys share a Redis Cluster slot.
"""

from __future__ import annotations

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
    return Limit(rt.key("{limits}", kind, subject), limit, window)


async def _run(rt: Runtime, delta: int, limits: tuple[Limit, ...]) -> int:
    args: list[int] = [delta]
    for item in limits:
        args += [item.limit, item.window]
    script = rt.redis.register_script(resources.lua("seatmap.accounts", "ratelimit.lua"))
    return int(await script(keys=[item.key for item in limits], args=args))


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
    await rt.redis.delete(*(item.key for item in limits))
