"""What an admin does with integrators' webhooks: endpoints, their delivery log, dead letters.

An endpoint's secret is returned once, when it is made (`POST /api/admin/webhooks`) or rotated
(`POST /api/admin/webhooks/{id}/secret`), and never again: it cannot be stored hashed (we sign
with it), so it is stored as it is and kept out of every other answer. After a rotation the
previous secret signs too, beside the new one, for `webhooks.ROTATION_OVERLAP`, so the integrator
can switch without losing a delivery.

A delivery's status as shown joins the row with its job (as refund_admin does): `delivered`;
`dead` when its job gave up (SEATMAP_JOB_MAX_ATTEMPTS, a disabled endpoint, a refused address);
`failed` while it waits for a retry after an error; `pending` before its first attempt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap import jobs
from seatmap.accounts.auth import require
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
from seatmap.errors import Conflict, InvalidInput, NotFound
from seatmap.runtime import runtime
from seatmap.sales import webhooks

TAGS: Final = ("webhooks",)
STATUSES: Final = ("pending", "failed", "delivered", "dead")

# The rest of the URL rule (http/https, a public host, no credentials) is `webhooks.check_url`'s,
# which says which part is wrong.
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=webhooks.MAX_URL)]
EventTypes = Annotated[
    list[webhooks.EventType], msgspec.Meta(min_length=1, max_length=len(webhooks.EVENT_TYPES))
]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class EndpointIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`event_types`: order.paid, order.refunded, ticket.checked_in, screening.cancelled,
    screening.sold_out, seat.status_changed."""

    url: Url
    event_types: EventTypes
    description: Description = ""
    enabled: bool = True


class EndpointPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url | UnsetType = UNSET
    event_types: EventTypes | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class Endpoint(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An endpoint without its secret. `pending`/`dead`: deliveries waiting, and given up on."""

    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    pending: int
    dead: int
    previous_secret_until: datetime | None = None  # after a rotation: the old secret signs until then


class NewSecret(Endpoint, kw_only=True):
    """The endpoint with its signing secret: shown this once, never returned again."""

    secret: str


class EndpointList(Page):
    items: list[Endpoint]


class Delivery(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`status`: pending | failed (a retry is due at `next_attempt_at`) | delivered | dead."""

    id: int
    endpoint_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    created_at: datetime
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class Attempt(msgspec.Struct, kw_only=True, omit_defaults=True):
    attempted_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None


class DeliveryDetail(Delivery, kw_only=True):
    """A delivery with the event exactly as sent (`event`) and every attempt, oldest first."""

    event: dict[str, Any]
    attempt_log: list[Attempt]


class DeliveryPage(Page):
    items: list[Delivery]


_ENDPOINT: Final = """
SELECT p.id, p.url, p.description, p.event_types, p.enabled, p.created_at, p.updated_at,
       CASE WHEN p.previous_secret_until > now() THEN p.previous_secret_until END AS previous_secret_until,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.endpoint_id = p.id AND d.status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = p.id AND d.status = 'dead') AS dead
FROM webhook_endpoints p
"""
LIST_ENDPOINTS: Final = f"{_ENDPOINT} ORDER BY p.id"
GET_ENDPOINT: Final = f"{_ENDPOINT} WHERE p.id = $1"
INSERT_ENDPOINT: Final = """
INSERT INTO webhook_endpoints (url, description, event_types, enabled, secret, created_by)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
"""
UPDATE_ENDPOINT: Final = """
UPDATE webhook_endpoints
SET url = coalesce($2, url), event_types = coalesce($3, event_types),
    description = coalesce($4, description), enabled = coalesce($5, enabled), updated_at = now()
WHERE id = $1 RETURNING id
"""
ROTATE_SECRET: Final = """
UPDATE webhook_endpoints
SET previous_secret = secret, previous_secret_until = now() + make_interval(secs => $3), secret = $2,
    updated_at = now()
WHERE id = $1 RETURNING id
"""
DELETE_ENDPOINT: Final = "DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id"

# The job is the one with dedupe key 'webhook:<id>' (webhooks.job_key), found through its index.
_DELIVERY: Final = """
SELECT d.id, d.endpoint_id, d.event_id, e.type AS event_type, d.attempts, d.created_at, d.last_status,
       d.last_error, d.last_attempt_at, d.delivered_at,
       CASE WHEN d.status <> 'pending' THEN d.status
            WHEN j.status = 'dead' THEN 'dead'
            WHEN j.status = 'queued' AND j.attempts > 0 THEN 'failed'
            ELSE 'pending' END AS status,
       CASE WHEN d.status = 'pending' AND j.status = 'queued' AND j.attempts > 0 THEN j.run_at END
           AS next_attempt_at,
       j.id AS job_id, e.body
FROM webhook_deliveries d
JOIN webhook_events e ON e.id = d.event_id
LEFT JOIN jobs j ON j.dedupe_key = 'webhook:' || d.id
"""
LIST_DELIVERIES: Final = f"""
SELECT * FROM ({_DELIVERY} WHERE d.endpoint_id = $1 AND d.id < $2) x
WHERE $3::text IS NULL OR x.status = $3
ORDER BY x.id DESC LIMIT $4
"""
ONE_DELIVERY: Final = f"{_DELIVERY} WHERE d.id = $1"
ATTEMPTS: Final = """
SELECT attempted_at, duration_ms, status_code, error FROM webhook_attempts WHERE delivery_id = $1
ORDER BY id LIMIT 100
"""
REVIVE: Final = "UPDATE webhook_deliveries SET status = 'pending' WHERE id = $1 AND status = 'dead'"


def _delivery(row: Any) -> Delivery:
    fields = dict(row)
    fields.pop("job_id")
    fields.pop("body")
    return Delivery(**fields)


async def _endpoint(conn: Any, endpoint_id: int) -> Endpoint:
    row = await conn.fetchrow(GET_ENDPOINT, endpoint_id)
    if row is None:
        raise NotFound("No such webhook endpoint.")
    return Endpoint(**dict(row))


@documented(
    "Webhook endpoints of integrators, without their secrets",
    responses={200: EndpointList},
    auth="admin",
    tags=TAGS,
)
async def list_endpoints(request: Request) -> Response:
    await require(request, "admin")
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST_ENDPOINTS)
    return respond(EndpointList(items=[Endpoint(**dict(r)) for r in rows]))


@documented(
    "Register a webhook endpoint (http/https; loopback and private addresses refused unless "
    "SEATMAP_WEBHOOK_ALLOW_PRIVATE); the answer carries its signing secret, shown this once",
    body=EndpointIn,
    responses={201: NewSecret, 422: None},
    auth="admin",
    tags=TAGS,
)
async def create_endpoint(request: Request) -> Response:
    admin = await require(request, "admin")
    body = await read_body(request, EndpointIn)
    rt = runtime(request)
    url = webhooks.check_url(body.url, allow_private=rt.settings.webhook_allow_private)
    types = webhooks.check_event_types(body.event_types)
    secret = webhooks.new_secret()
    async with rt.pool.acquire() as conn:
        endpoint_id = await conn.fetchval(
            INSERT_ENDPOINT, url, body.description, types, body.enabled, secret, admin.user_id
        )
        endpoint = await _endpoint(conn, endpoint_id)
    return respond(NewSecret(**msgspec.structs.asdict(endpoint), secret=secret), 201)


@documented(
    "One webhook endpoint, without its secret", responses={200: Endpoint, 404: None}, auth="admin", tags=TAGS
)
async def get_endpoint(request: Request) -> Response:
    await require(request, "admin")
    async with runtime(request).pool.acquire() as conn:
        return respond(await _endpoint(conn, path_int(request, "id")))


@documented(
    "Change an endpoint's URL, event types, description, or enable/disable it (a disabled one "
    "gets no new events; its queued deliveries go dead, retryable once it is enabled again)",
    body=EndpointPatch,
    responses={200: Endpoint, 404: None, 422: None},
    auth="admin",
    tags=TAGS,
)
async def patch_endpoint(request: Request) -> Response:
    await require(request, "admin")
    body = await read_body(request, EndpointPatch)
    rt = runtime(request)
    url = None
    if not isinstance(body.url, UnsetType):
        url = webhooks.check_url(body.url, allow_private=rt.settings.webhook_allow_private)
    types = None if isinstance(body.event_types, UnsetType) else webhooks.check_event_types(body.event_types)
    description = None if isinstance(body.description, UnsetType) else body.description
    enabled = None if isinstance(body.enabled, UnsetType) else body.enabled
    endpoint_id = path_int(request, "id")
    async with rt.pool.acquire() as conn:
        if await conn.fetchval(UPDATE_ENDPOINT, endpoint_id, url, types, description, enabled) is None:
            raise NotFound("No such webhook endpoint.")
        return respond(await _endpoint(conn, endpoint_id))


@documented(
    "Delete an endpoint with its delivery log (deliveries still queued are dropped)",
    responses={204: None, 404: None},
    auth="admin",
    tags=TAGS,
)
async def delete_endpoint(request: Request) -> Response:
    await require(request, "admin")
    async with runtime(request).pool.acquire() as conn:
        if await conn.fetchval(DELETE_ENDPOINT, path_int(request, "id")) is None:
            raise NotFound("No such webhook endpoint.")
    return Response(status_code=204)


@documented(
    "Rotate an endpoint's signing secret: the new one is shown this once; the previous one "
    "keeps signing beside it (a second v1) for 24 hours",
    responses={200: NewSecret, 404: None},
    auth="admin",
    tags=TAGS,
)
async def rotate_secret(request: Request) -> Response:
    await require(request, "admin")
    endpoint_id = path_int(request, "id")
    secret = webhooks.new_secret()
    overlap = webhooks.ROTATION_OVERLAP.total_seconds()
    async with runtime(request).pool.acquire() as conn:
        if await conn.fetchval(ROTATE_SECRET, endpoint_id, secret, overlap) is None:
            raise NotFound("No such webhook endpoint.")
        endpoint = await _endpoint(conn, endpoint_id)
    return respond(NewSecret(**msgspec.structs.asdict(endpoint), secret=secret))


@documented(
    "An endpoint's delivery log, newest first; `?status=` pending | failed | delivered | dead",
    query=(enum_param("status", STATUSES), "cursor", int_param("limit", 1, 200)),
    responses={200: DeliveryPage, 404: None},
    auth="admin",
    tags=TAGS,
)
async def list_deliveries(request: Request) -> Response:
    await require(request, "admin")
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}.", path="$.status")
    limit = query_int(request, "limit", 50, minimum=1, maximum=200)
    before = cursor_id(request) or 2**63 - 1
    endpoint_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        await _endpoint(conn, endpoint_id)
        rows = await conn.fetch(LIST_DELIVERIES, endpoint_id, before, status, limit + 1)
    items = [_delivery(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(DeliveryPage(items=items, next_cursor=next_cursor))


@documented(
    "One delivery: the event as sent and every attempt with its answer",
    responses={200: DeliveryDetail, 404: None},
    auth="admin",
    tags=TAGS,
)
async def get_delivery(request: Request) -> Response:
    await require(request, "admin")
    delivery_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn:
        row = await conn.fetchrow(ONE_DELIVERY, delivery_id)
        if row is None:
            raise NotFound("No such delivery.")
        attempts = [Attempt(**dict(a)) for a in await conn.fetch(ATTEMPTS, delivery_id)]
    base = msgspec.structs.asdict(_delivery(row))
    event = msgspec.json.decode(row["body"])
    return respond(DeliveryDetail(**base, event=event, attempt_log=attempts))


@documented(
    "Retry a dead delivery: its job runs again from its first attempt, with the same Webhook-Id "
    "(409 if it is not dead)",
    responses={202: Delivery, 404: None, 409: None},
    auth="admin",
    tags=TAGS,
)
async def retry_delivery(request: Request) -> Response:
    await require(request, "admin")
    delivery_id = path_int(request, "id")
    async with runtime(request).pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(ONE_DELIVERY, delivery_id)
        if row is None:
            raise NotFound("No such delivery.")
        if row["status"] != "dead" or row["job_id"] is None or not await jobs.retry(conn, row["job_id"]):
            raise Conflict(
                f"Only a dead delivery can be retried; this one is {row['status']}.", status=row["status"]
            )
        await conn.execute(REVIVE, delivery_id)
        again = await conn.fetchrow(ONE_DELIVERY, delivery_id)
    return respond(_delivery(again), 202)


routes: list[BaseRoute] = [
    Route("/admin/webhooks", list_endpoints, methods=["GET"]),
    Route("/admin/webhooks", create_endpoint, methods=["POST"]),
    Route("/admin/webhooks/{id:int}", get_endpoint, methods=["GET"]),
    Route("/admin/webhooks/{id:int}", patch_endpoint, methods=["PATCH"]),
    Route("/admin/webhooks/{id:int}", delete_endpoint, methods=["DELETE"]),
    Route("/admin/webhooks/{id:int}/secret", rotate_secret, methods=["POST"]),
    Route("/admin/webhooks/{id:int}/deliveries", list_deliveries, methods=["GET"]),
    Route("/admin/webhooks/deliveries/{id:int}", get_delivery, methods=["GET"]),
    Route("/admin/webhooks/deliveries/{id:int}/retry", retry_delivery, methods=["POST"]),
]
