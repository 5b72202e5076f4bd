"""What the admin sees of the simulated gateway's webhooks that it gave up on.

A gateway stops trying after a while (outbox.py: 12 attempts, then `due_at` is 'infinity'), and
a payment whose confirmation never arrived stays `processing` on our side. Real gateways show
such events in their dashboard, with a button to send them again; this is that page for the
simulated one: the event, its payment and order, how often it was tried and the last answer.
Sending again puts it back in the outbox as a fresh event (attempts from zero).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts.auth import require
from seatmap.api import (
    INT64_MAX,
    Page,
    cursor_id,
    documented,
    encode_cursor,
    int_param,
    path_int,
    query_int,
    respond,
)
from seatmap.errors import Conflict, NotFound
from seatmap.runtime import runtime

TAGS: Final = ("payments",)


class GivenUpWebhook(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`type`: the event (payment.paid, ...); `reference`: our order id as the gateway knows it;
    `last_status`: the HTTP status of the last attempt (none: no answer)."""

    id: int
    payment_id: str
    type: str
    url: str
    attempts: int
    created_at: datetime
    reference: str | None = None
    last_status: int | None = None


class GivenUpPage(Page):
    items: list[GivenUpWebhook]


_GIVEN_UP: Final = "delivered_at IS NULL AND due_at = 'infinity'"
LIST: Final = f"""
SELECT id, payment_id, url, attempts, last_status, created_at, convert_from(body, 'UTF8') AS body
FROM simulated_webhooks WHERE {_GIVEN_UP} AND id < $1 ORDER BY id DESC LIMIT $2
"""
SEND_AGAIN: Final = f"""
UPDATE simulated_webhooks SET due_at = now(), attempts = 0, last_status = NULL
WHERE id = $1 AND {_GIVEN_UP} RETURNING id
"""
EXISTS: Final = "SELECT delivered_at IS NOT NULL AS delivered FROM simulated_webhooks WHERE id = $1"


def _item(row: Any) -> GivenUpWebhook:
    try:
        event = msgspec.json.decode(row["body"])
    except msgspec.DecodeError:
        event = {}
    data = event.get("data") if isinstance(event, dict) else None
    reference = data.get("reference") if isinstance(data, dict) else None
    return GivenUpWebhook(
        id=row["id"], payment_id=row["payment_id"], type=str(event.get("type", "")) if event else "",
        url=row["url"], attempts=row["attempts"], created_at=row["created_at"],
        reference=str(reference) if reference is not None else None, last_status=row["last_status"],
    )  # fmt: skip


@documented(
    "Webhooks the simulated gateway gave up delivering (after its last attempt), newest first",
    query=("cursor", int_param("limit", 1, 200)),
    responses={200: GivenUpPage},
    auth="admin",
    tags=TAGS,
)
async def list_given_up(request: Request) -> Response:
    await require(request, "admin")
    limit = query_int(request, "limit", 50, minimum=1, maximum=200)
    before = cursor_id(request) or INT64_MAX
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST, before, limit + 1)
    items = [_item(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(GivenUpPage(items=items, next_cursor=next_cursor))


@documented(
    "Send a given-up webhook again: back in the gateway's outbox, attempts from zero (409 if it "
    "was not given up)",
    responses={204: None, 404: None, 409: None},
    auth="admin",
    tags=TAGS,
)
async def send_again(request: Request) -> Response:
    await require(request, "admin")
    webhook = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        again = await conn.fetchval(SEND_AGAIN, webhook)
        if again is None:
            delivered = await conn.fetchval(EXISTS, webhook)
            if delivered is None:
                raise NotFound("No such webhook.")
            raise Conflict(
                "This webhook was delivered." if delivered else "This webhook is still being tried."
            )
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/admin/gateway/webhooks/given-up", list_given_up, methods=["GET"]),
    Route("/admin/gateway/webhooks/{id:int}/send-again", send_again, methods=["POST"]),
]
