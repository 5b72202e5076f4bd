"""Sales: a committed sale shown as sold seats in Redis, and the repair after a crash.

A paid order (web or box office) is written to PostgreSQL first, in one transaction with its
tickets; only then does `publish_sold` run `Holds.sell`, the Lua step that marks the seats sold,
clears the hold, takes the next seq and tells every viewer (at most once per order). If the
process dies between the two, the seats stay `held` until `sweep_forever`, which runs in every web
process, finds the paid order still marked unpublished and runs `sell` again; and if Redis lost
the screening meanwhile, its rebuild from PostgreSQL shows the seats sold anyway (tickets are in
`Inventory.sold`). Design invariant 5.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from redis.exceptions import RedisError

from seatmap.errors import RETRYABLE
from seatmap.live.protocol import GASelection
from seatmap.runtime import Runtime
from seatmap.sales import alerts
from seatmap.settings import Settings

log = logging.getLogger("seatmap.sales.settlement")

_SWEEP_INTERVAL: Final = 1.0
# A paid order not shown sold this long after payment was left behind by a crash.
_PUBLISH_GRACE: Final = "5 seconds"

# What confirmation and publishing need of an order, in one row.
LIVE_ORDER_COLUMNS: Final = """
o.id, o.user_id, o.sold_by, o.screening_id, o.hold_token, o.status, o.currency, o.total,
o.expires_at, o.expires_at <= now() AS lapsed,
(SELECT coalesce(array_agg(seat_label ORDER BY position), '{}') FROM order_lines
 WHERE order_id = o.id AND seat_label IS NOT NULL) AS seats,
(SELECT min(ga_area) FROM order_lines WHERE order_id = o.id) AS ga_area,
(SELECT count(*) FROM order_lines WHERE order_id = o.id AND ga_area IS NOT NULL) AS ga_units,
(SELECT count(*) FROM order_lines WHERE order_id = o.id) AS line_count
"""
UNPUBLISHED: Final = f"""
SELECT {LIVE_ORDER_COLUMNS} FROM orders o
WHERE o.status = 'paid' AND NOT o.seats_published AND o.paid_at < now() - interval '{_PUBLISH_GRACE}'
ORDER BY o.paid_at LIMIT 100
"""

MARK_PUBLISHED: Final = "UPDATE orders SET seats_published = true WHERE id = ANY($1::bigint[])"


# ---- a paid order, as confirmation and publishing see it -----------------------------------------


@dataclass(frozen=True)
class LiveOrder:
    id: int
    user_id: int | None
    sold_by: int | None
    screening_id: int
    hold_token: str
    status: str
    currency: str
    total: int
    expires_at: datetime
    lapsed: bool
    seats: list[str]
    ga: GASelection | None
    lines: int

    @classmethod
    def of(cls, row: Any) -> LiveOrder:
        ga = GASelection(row["ga_area"], row["ga_units"]) if row["ga_units"] else None
        return cls(
            id=row["id"], user_id=row["user_id"], sold_by=row["sold_by"], screening_id=row["screening_id"],
            hold_token=row["hold_token"], status=row["status"], currency=row["currency"], total=row["total"],
            expires_at=row["expires_at"], lapsed=row["lapsed"], seats=list(row["seats"]), ga=ga,
            lines=row["line_count"],
        )  # fmt: skip

    @property
    def hold_owner(self) -> int:
        owner = self.user_id if self.user_id is not None else self.sold_by
        assert owner is not None
        return owner


def checkout_settings(settings: Settings) -> Settings:
    """The live holds' settings for checkout (`Runtime.checkout_holds`): `extend` reaches the
    payment window (within the hold's maximum), and staff at the box office may hold for many
    sales at once."""
    s = settings
    return replace(s, hold_ttl=min(s.payment_window, s.hold_max), holds_per_user=max(s.holds_per_user, 1000))


async def publish_sold(rt: Runtime, order: LiveOrder) -> None:
    """Show a paid order's seats sold in Redis (one Lua step), then remember that it was done.

    Then the screening's near-sold-out alerts are checked (alerts.py), before the order is
    written down as published: a crash in between checks again with the sweeper's repeat.

    Safe to repeat: `Holds.sell` runs once per order. If this process dies before it, the
    sweeper of any process runs it again, and a rebuild from PostgreSQL shows the seats sold
    anyway (tickets are in `Inventory.sold`).
    """
    await rt.holds.sell(order.hold_token, order.hold_owner, order.seats, order.ga, str(order.id))
    try:
        await alerts.check(rt, order.screening_id)
    except RETRYABLE as exc:
        # The sale stands; the next sale of this screening checks again.
        log.warning("order %s: the near-sold-out check failed (%s)", order.id, exc)
    rt.state.published_orders.add(order.id)


async def publish_sold_or_defer(rt: Runtime, order: LiveOrder) -> None:
    """`publish_sold` right after a sale's commit. If Redis fails now, the sale stands (it is
    committed) and the sweeper publishes it within seconds; the request still succeeds."""
    try:
        await publish_sold(rt, order)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning(
            "order %s is paid; showing its seats sold failed (%s), the sweeper retries", order.id, exc
        )


async def flush_published(rt: Runtime) -> int:
    """Write down the orders this process showed sold: one statement per sweep round (well inside
    the grace period) instead of one per sale."""
    done = set(rt.state.published_orders)
    if done:
        async with rt.pool.acquire() as conn:
            await conn.execute(MARK_PUBLISHED, list(done))
        rt.state.published_orders.difference_update(done)
    return len(done)


# ---- the sweeper ---------------------------------------------------------------------------------


async def sweep_once(rt: Runtime) -> int:
    """Publish paid orders a crash left unpublished; returns how many."""
    await flush_published(rt)
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(UNPUBLISHED)
    for row in rows:
        order = LiveOrder.of(row)
        log.warning("order %s was paid but not shown sold; publishing it now", order.id)
        await publish_sold(rt, order)
    return len(rows)


async def sweep_forever(rt: Runtime) -> None:
    """Runs in every web process (the work is idempotent); a failed round is retried next time."""
    try:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            try:
                await sweep_once(rt)
            except RETRYABLE as exc:
                log.warning("order sweep failed, retrying: %s", exc)
    finally:
        # On a clean shutdown, write down what this process showed sold (else the next sweep
        # of any process finds those orders and runs the idempotent `sell` again).
        with contextlib.suppress(Exception):
            await flush_published(rt)
