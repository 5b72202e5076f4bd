"""Reconciliation: the seat map in Redis checked against the tickets in PostgreSQL, and repaired.

Redis makes the map fast; PostgreSQL is the truth (invariant 5). A rebuild after Redis lost a
screening is right by construction, but a Redis that lost state and came back can still be told
something wrong afterwards (a script run on a marker that vanished, an operator's hand, a bug),
and nothing else would ever notice: the map would offer a seat that a live ticket holds, the
buyer would pay, and the unique index would refuse the sale (the payment then goes back).

So every `SEATMAP_RECONCILE_INTERVAL` seconds one web process (a Redis lock picks it; the others
skip that round) looks at each screening loaded in Redis that has not ended, and hands its live
tickets (`live.sold`, the hook sales fills) to the `reconcile` script: every ticketed seat that
Redis shows free, or held by someone else's hold, becomes sold again, in one delta published
the normal way (the screening's next seq, so viewers' sequences stay consecutive). Each repair
is counted (`seatmap_reconciled_seats_total`) and logged: it means something went wrong first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import msgspec
from prometheus_client import Counter

from seatmap.errors import RETRYABLE
from seatmap.live import replies
from seatmap.live.inventory import Inventory
from seatmap.live.replies import NOT_LOADED

log = logging.getLogger("seatmap.live.reconcile")

RECONCILED: Final = Counter(
    "seatmap_reconciled_seats_total",
    "Seats Redis showed free (or held by another hold) while PostgreSQL had a live ticket for "
    "them, marked sold again by the reconciler. Anything but 0 means the map was wrong first.",
)

# Screenings whose map still matters: not ended (a cancelled one may still have live tickets).
_LIVE_SCREENINGS: Final = "SELECT id FROM screenings WHERE ends_at > now() ORDER BY id"
_RECONCILED: Final = msgspec.json.Decoder(replies.Reconciled)


class Reconciler:
    def __init__(self, inventory: Inventory, interval: float) -> None:
        self.inventory = inventory
        self.interval = interval
        self.lock_key = f"{inventory.prefix}:reconcile"

    async def screening(self, screening: int) -> list[str]:
        """Repair one screening's map from its live tickets; returns the seats marked sold again
        (none if the screening is not loaded in Redis: a load would be right anyway)."""
        async with self.inventory.pool.acquire() as conn:
            durable = await self.inventory.sold(conn, screening)
        if not durable.seats:
            return []
        k = self.inventory.keys(screening)
        args: list[Any] = [k.channel, self.inventory.loglen]
        for label, seat in durable.seats.items():
            args += [label, seat.order, seat.hold]
        raw = await self.inventory.scripts("reconcile", [k.meta, k.seats, k.owners, k.seq, k.log], args)
        if raw == NOT_LOADED:
            return []
        repaired = _RECONCILED.decode(raw).seats
        if repaired:
            RECONCILED.inc(len(repaired))
            log.warning(
                "screening %d: %d seat(s) with a live ticket were not sold in Redis (%s); marked sold again",
                screening, len(repaired), ",".join(repaired),
            )  # fmt: skip
        return repaired

    async def round(self) -> int:
        """Every loaded screening that has not ended, once; returns how many seats were repaired."""
        async with self.inventory.pool.acquire() as conn:
            screenings = [r["id"] for r in await conn.fetch(_LIVE_SCREENINGS)]
        if not screenings:
            return 0
        async with self.inventory.redis.pipeline(transaction=False) as pipe:
            for screening in screenings:
                pipe.exists(self.inventory.keys(screening).meta)
            loaded: list[int] = await pipe.execute()
        repaired = 0
        for screening, present in zip(screenings, loaded, strict=True):
            if present:
                repaired += len(await self.screening(screening))
        return repaired

    async def run_forever(self) -> None:
        """Runs in every web process; the lock lets one of them do each round."""
        while True:
            started = time.monotonic()
            try:
                ttl_ms = max(1, int(self.interval * 1000 * 0.9))
                if await self.inventory.redis.set(self.lock_key, "1", nx=True, px=ttl_ms):
                    await self.round()
            except RETRYABLE as exc:
                log.warning("reconciliation round failed, retrying next interval: %s", exc)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
