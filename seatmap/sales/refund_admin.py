"""What an admin sees of refunds: every refund with its job's attempts and last error, and a
retry for the dead ones (design invariant 6: money is never lost silently).

A refund's status as shown joins the row with its job: `succeeded` once the gateway returned
the money; `manual` when it was taken at the counter and is owed there, until staff confirm
they paid it out with the till's reference (`POST /api/admin/refunds/{id}/confirm`), then
`paid_out`; `dead` when its job gave up (after SEATMAP_JOB_MAX_ATTEMPTS); `failed` while it is
waiting for a retry after an error; `pending` otherwise. Each item names its order, customer
(none for a box-office sale) and screening, so the page reads without looking anything up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap import jobs
from seatmap.accounts import scope
from seatmap.api import (
    Page,
    cursor_id,
    documented,
    encode_cursor,
    enum_param,
    int_param,
    path_int,
    query_int,
    read_body,
    respond,
)
from seatmap.db import AnyConnection
from seatmap.errors import AccountGone, Conflict, InvalidInput, NotFound, ReferenceUsed
from seatmap.money import exponent
from seatmap.runtime import runtime

TAGS: Final = ("refunds",)
STATUSES: Final = ("pending", "failed", "dead", "succeeded", "manual", "paid_out")


class Confirmation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The till's reference of the payout (the receipt or drawer slip number)."""

    till_reference: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class RefundItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`status`: pending | failed (retrying) | dead | succeeded | manual (paid at the counter:
    owed there) | paid_out (a manual refund staff confirmed, with `till_reference`).
    `next_attempt_at`: when a failed refund is tried again."""

    id: int
    order_id: int
    payment_id: int
    amount: int
    currency: str
    currency_exponent: int  # decimal places of `currency` in amounts (money.py)
    reason: str
    status: str
    attempts: int
    created_at: datetime
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    completed_at: datetime | None = None
    provider_refund_id: str | None = None
    screening_id: int
    movie_title: str
    starts_at: datetime
    channel: str
    customer_id: int | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    confirmed_at: datetime | None = None
    confirmed_by: int | None = None
    till_reference: str | None = None


class RefundPage(Page):
    items: list[RefundItem]


# The job is the one with dedupe key 'refund:<id>' (refunds.job_key), found through its index.
_ITEMS: Final = """
SELECT r.id, r.order_id, r.payment_id, r.amount, r.currency, r.reason, r.created_at, r.completed_at,
       r.provider_refund_id, r.confirmed_at, r.confirmed_by, r.till_reference,
       o.screening_id, o.channel, m.title AS movie_title, s.starts_at,
       u.id AS customer_id, u.email AS customer_email, nullif(u.name, '') AS customer_name,
       CASE WHEN r.status = 'manual' AND r.confirmed_at IS NOT NULL THEN 'paid_out'
            WHEN r.status <> 'pending' THEN r.status
            WHEN j.status = 'dead' THEN 'dead'
            WHEN j.last_error IS NOT NULL THEN 'failed'
            ELSE 'pending' END AS status,
       coalesce(j.attempts, 0) AS attempts,
       CASE WHEN r.status = 'pending' THEN j.last_error END AS last_error,
       CASE WHEN r.status = 'pending' AND j.status = 'queued' AND j.last_error IS NOT NULL
            THEN j.run_at END AS next_attempt_at,
       j.id AS job_id, a.cinema_id
FROM refunds r LEFT JOIN jobs j ON j.dedupe_key = 'refund:' || r.id
JOIN orders o ON o.id = r.order_id
JOIN screenings s ON s.id = o.screening_id
JOIN auditoriums a ON a.id = s.auditorium_id
JOIN movies m ON m.id = s.movie_id
LEFT JOIN users u ON u.id = o.user_id
"""
# Only a manual refund not yet confirmed; the unique index on till_reference refuses a reuse.
CONFIRM: Final = """
UPDATE refunds SET confirmed_at = now(), confirmed_by = $2, till_reference = $3
WHERE id = $1 AND status = 'manual' AND confirmed_at IS NULL
RETURNING id
"""
TILL_REFERENCE_OWNER: Final = "SELECT id FROM refunds WHERE till_reference = $1"
# $4: the caller's cinemas (scope.filter_ids), NULL for every cinema.
LIST: Final = f"""
SELECT * FROM ({_ITEMS} WHERE r.id < $1) x
WHERE ($2::text IS NULL OR x.status = $2)
  AND ($4::bigint[] IS NULL OR x.cinema_id = ANY($4))
ORDER BY x.id DESC LIMIT $3
"""
ONE: Final = f"{_ITEMS} WHERE r.id = $1"


def _item(row: Any) -> RefundItem:
    fields = dict(row)
    fields.pop("job_id")
    fields.pop("cinema_id")
    return RefundItem(**fields, currency_exponent=exponent(fields["currency"]))


async def refund_item(conn: AnyConnection, refund_id: int) -> RefundItem | None:
    row = await conn.fetchrow(ONE, refund_id)
    return None if row is None else _item(row)


@documented(
    "Refunds, newest first, with order, customer, screening and amount; `?status=` pending | "
    "failed | dead | succeeded | manual (owed at the counter) | paid_out (dead ones carry their "
    "last error)",
    query=(enum_param("status", STATUSES), "cursor", int_param("limit", 1, 200)),
    responses={200: RefundPage},
    auth="staff",
    scope="cinema",
    tags=TAGS,
)
async def list_refunds(request: Request) -> Response:
    """Staff (who pay cash refunds out at the counter) and admins see every refund, an
    organizer those of its cinemas' orders."""
    who = await scope.require_scoped(request, "staff")
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}.", path="$.status")
    limit = query_int(request, "limit", 50, minimum=1, maximum=200)
    before = cursor_id(request) or 2**63 - 1
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST, before, status, limit + 1, scope.filter_ids(who))
    items = [_item(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(RefundPage(items=items, next_cursor=next_cursor))


@documented(
    "Retry a dead refund: its job runs again from its first attempt (409 if it is not dead)",
    responses={202: RefundItem, 404: None, 409: None},
    auth="admin",
    scope="cinema",
    tags=TAGS,
)
async def retry_refund(request: Request) -> Response:
    who = await scope.require_scoped(request)
    refund_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(ONE, refund_id)
        if row is None:
            raise NotFound("No such refund.")
        scope.check_cinema(who, row["cinema_id"])
        if row["status"] != "dead" or not await jobs.retry(conn, row["job_id"]):
            raise Conflict(
                f"Only a dead refund can be retried; this one is {row['status']}.", status=row["status"]
            )
        item = await refund_item(conn, refund_id)
    return respond(item, 202)


@documented(
    "Confirm a manual (counter) refund was paid out, with the till's reference (409 if it is not "
    "a manual refund still owed, or the reference confirms another refund)",
    body=Confirmation,
    responses={200: RefundItem, 404: None, 409: None},
    auth="staff",
    scope="cinema",
    tags=TAGS,
)
async def confirm_refund(request: Request) -> Response:
    who = await scope.require_scoped(request, "staff")
    refund_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(ONE, refund_id)
        if row is None:
            raise NotFound("No such refund.")
        scope.check_cinema(who, row["cinema_id"])
        body = await read_body(request, Confirmation)
        reference = body.till_reference.strip()
        try:
            confirmed = await conn.fetchval(CONFIRM, refund_id, who.user_id, reference)
        except asyncpg.UniqueViolationError:
            other = await conn.fetchval(TILL_REFERENCE_OWNER, reference)
            raise ReferenceUsed(
                f"The till reference {reference!r} already confirms refund {other}.", refund_id=other
            ) from None
        except asyncpg.ForeignKeyViolationError:
            raise AccountGone() from None
        item = await refund_item(conn, refund_id)
    assert item is not None
    if confirmed is None:
        wording = f"Only a manual refund still owed can be confirmed; this one is {item.status}."
        raise Conflict(wording, status=item.status)
    return respond(item)


routes: list[BaseRoute] = [
    Route("/admin/refunds", list_refunds, methods=["GET"]),
    Route("/admin/refunds/{id:int}/retry", retry_refund, methods=["POST"]),
    Route("/admin/refunds/{id:int}/confirm", confirm_refund, methods=["POST"]),
]
