"""Cancelling a screening: one transaction decides everything; the worker returns the money.

`POST /api/admin/screenings/{id}/cancel` answers 202 at once, without calling the gateway. In
one transaction the screening becomes `cancelled`, every paid order `refund_pending` with a
refund row and its `refund` job, every pending order `cancelled`, and each buyer gets a
`screening_cancelled` notification job. So either all of it happened or none of it; and a
payment confirmed at the same moment either committed first (its order is then paid and gets
refunded here) or finds its order cancelled (and checkout marks the money for refund).

After the commit, the live map says `status: cancelled` to every viewer (so no new hold can be
made: the hold scripts refuse a screening that is not `scheduled`) and every hold on it is
released in one delta. The same step is queued as a job too, so a process that dies between the
commit and Redis leaves the worker to finish it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Final

import msgspec
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap import jobs
from seatmap.accounts import scope
from seatmap.api import documented, path_int, read_body, respond
from seatmap.errors import Conflict, NotFound
from seatmap.runtime import Runtime, runtime
from seatmap.sales import notifications, refunds, webhooks

log = logging.getLogger("seatmap.sales.cancellations")

JOB: Final = "screening_cancelled"


class CancelRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`reason` is told to the customers."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class Cancellation(msgspec.Struct, kw_only=True):
    """What the cancellation did: refunds queued (one per paid order), pending orders cancelled,
    holds released on the live map."""

    status: str
    refunds_queued: int
    orders_cancelled: int
    holds_released: int


LOCK_SCREENING: Final = "SELECT status, starts_at FROM screenings WHERE id = $1 FOR UPDATE"
MARK_CANCELLED: Final = """
UPDATE screenings SET status = 'cancelled', cancelled_at = now(), cancel_reason = $2 WHERE id = $1
"""
CANCEL_PENDING: Final = """
UPDATE orders SET status = 'cancelled', closed_at = now()
WHERE screening_id = $1 AND status = 'pending'
RETURNING id, user_id
"""
# Every paid order: refund pending, and a refund of the payment that paid it.
REFUND_PAID: Final = """
WITH o AS (
    UPDATE orders SET status = 'refund_pending', closed_at = now()
    WHERE screening_id = $1 AND status = 'paid'
    RETURNING id, user_id
), r AS (
    INSERT INTO refunds (order_id, payment_id, amount, currency, reason, closes_order, requested_by)
    SELECT DISTINCT ON (o.id) o.id, p.id, p.amount, p.currency, 'screening_cancelled', true, $2
    FROM o JOIN payments p ON p.order_id = o.id AND p.status = 'paid' AND NOT p.needs_refund
    ORDER BY o.id, p.id
    RETURNING id, order_id
)
SELECT r.id, r.order_id, o.user_id FROM r JOIN o ON o.id = r.order_id ORDER BY r.id
"""


@documented(
    "Cancel a screening: every paid order is refunded by the worker, pending orders are "
    "cancelled, viewers see it cancelled and holds are released (202 with the counts)",
    body=CancelRequest,
    responses={202: Cancellation, 404: None, 409: None},
    auth="admin",
    scope="cinema",
    tags=("screenings",),
)
async def cancel_screening(request: Request) -> Response:
    admin = await scope.require_scoped(request)
    rt = runtime(request)
    screening_id = path_int(request, "id")
    async with rt.pool.acquire() as conn:
        await scope.check_screening(conn, admin, screening_id)
    body = await read_body(request, CancelRequest)
    settings = rt.settings
    async with rt.pool.acquire() as conn, conn.transaction():
        screening = await conn.fetchrow(LOCK_SCREENING, screening_id)
        if screening is None:
            raise NotFound("No such screening.")
        if screening["status"] == "cancelled":
            raise Conflict("This screening is cancelled already.", status="cancelled")
        await conn.execute(MARK_CANCELLED, screening_id, body.reason)
        # Pending first: an order being paid right now is locked by its webhook; this waits for
        # it, sees it paid and leaves it to the next statement, which refunds it.
        pending = await conn.fetch(CANCEL_PENDING, screening_id)
        paid = await conn.fetch(REFUND_PAID, screening_id, admin.user_id)
        await refunds.queue(conn, settings, [r["id"] for r in paid])
        told = [(r["user_id"], r["order_id"], None) for r in paid if r["user_id"] is not None]
        told += [(r["user_id"], r["id"], None) for r in pending if r["user_id"] is not None]
        await notifications.notify_many(conn, settings, "screening_cancelled", told)
        cancelled = {
            "screening_id": screening_id, "reason": body.reason, "refunds_queued": len(paid),
            "orders_cancelled": len(pending),
        }  # fmt: skip
        await webhooks.emit(conn, settings, "screening.cancelled", cancelled, screening_id=screening_id)
        await jobs.enqueue(
            conn,
            JOB,
            {"screening_id": screening_id},
            dedupe_key=f"{JOB}:{screening_id}",
            max_attempts=settings.job_max_attempts,
        )
    try:
        released = await release_live(rt, screening_id, screening["starts_at"])
    except RedisError as exc:
        log.warning("screening %s cancelled; the live map will follow (worker): %s", screening_id, exc)
        released = 0
    log.info(
        "screening %s cancelled: %d refund(s) queued, %d pending order(s) cancelled, %d hold(s) released",
        screening_id, len(paid), len(pending), released,
    )  # fmt: skip
    result = Cancellation(
        status="cancelled", refunds_queued=len(paid), orders_cancelled=len(pending), holds_released=released
    )
    return respond(result, 202)


async def release_live(rt: Runtime, screening_id: int, starts_at: datetime) -> int:
    """Tell viewers the screening is cancelled, then release every hold on it; returns how many.

    Safe to repeat: the status is published again only if Redis does not say `cancelled` yet,
    and a second release finds no holds.
    """
    inventory = rt.holds.inventory
    k = inventory.keys(screening_id)
    if await inventory.redis.hget(k.meta, "status") != "cancelled":
        await inventory.set_status(screening_id, "cancelled", starts_at)
    # From here no hold can be added (the scripts refuse a cancelled screening).
    return await inventory.drop_holds(screening_id)


async def run_live_cancel(rt: Runtime, job: jobs.Job) -> None:
    """The `screening_cancelled` job: the live-map half of a cancellation, again (idempotent)."""
    screening_id = int(job.payload["screening_id"])
    async with rt.pool.acquire() as conn:
        starts_at = await conn.fetchval("SELECT starts_at FROM screenings WHERE id = $1", screening_id)
    if starts_at is not None:
        await release_live(rt, screening_id, starts_at)


routes: list[BaseRoute] = [
    Route("/admin/screenings/{id:int}/cancel", cancel_screening, methods=["POST"]),
]
