"""Webhooks out to integrators: events written with the change they report, delivered as jobs.

An admin registers endpoints (webhook_admin.py): a URL, the event types it wants, and a secret
we sign with. A state change that integrators hear of calls one of the `*_event` functions below
inside its own transaction; `emit` writes the event (its body, fixed from then on) and one
delivery per enabled endpoint subscribed to its type, and queues a `webhook` job per delivery in
the same transaction. So a committed change is never lost and a rolled-back one is never told;
with no endpoint subscribed nothing is written (one small read of the endpoints table).

The `webhook` job (`Sender.deliver`) POSTs the event's body with

- `Webhook-Id`: the event's id, the same on every attempt (and to every endpoint): delivery is
  at-least-once, so a receiver that processes each id once sees every event exactly once;
- `Seatmap-Signature: t=<unix seconds>,v1=<hex>`: HMAC-SHA256 of `<t>.<body>` keyed with the
  endpoint's secret, made by `gateway.sign` (the scheme our own payment webhooks use); after a
  rotation, a second `v1` with the previous secret for `ROTATION_OVERLAP`;
- `Seatmap-Event` (the type), `Seatmap-Delivery` (this endpoint's delivery id) and
  `Seatmap-Attempt` (1, 2, …).

A 2xx answer delivers it; anything else (an error status, a redirect, a timeout, no answer) fails
the attempt, which the job outbox retries with its back-off until SEATMAP_JOB_MAX_ATTEMPTS, then
the delivery is dead, visible and retryable. Each attempt is logged (`webhook_attempts`).

`screening.sold_out` comes from the near-sold-out alerts (alerts.py): written in the transaction
that records the screening's sell-out, through its `CROSSED` hook, so once per screening.

`seat.status_changed` is batched per change: one event per committed sale or refund, listing
every seat it changed, in the live feed's delta shape (`{"seat","state"}`). Holds are not sent
(they come and go many times a second on a busy screening; the WebSocket is their feed).

Destinations: http(s) only, and never loopback, private or link-local addresses unless
SEATMAP_WEBHOOK_ALLOW_PRIVATE (checked at registration and again, after DNS, at delivery).
Production should also restrict where the worker may connect at the network level (an egress
proxy or firewall): a name can resolve differently between our check and the connection.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
import msgspec
from prometheus_client import Counter

from seatmap import jobs
from seatmap.db import AnyConnection
from seatmap.errors import InvalidInput
from seatmap.runtime import Runtime
from seatmap.sales import alerts
from seatmap.sales.gateway import SIGNATURE_HEADER, sign
from seatmap.settings import Settings

log = logging.getLogger("seatmap.sales.webhooks")

JOB: Final = "webhook"
EventType = Literal[
    "order.paid",
    "order.refunded",
    "ticket.checked_in",
    "screening.cancelled",
    "screening.sold_out",
    "seat.status_changed",
]
EVENT_TYPES: Final[tuple[EventType, ...]] = (
    "order.paid",
    "order.refunded",
    "ticket.checked_in",
    "screening.cancelled",
    "screening.sold_out",
    "seat.status_changed",
)
MAX_URL: Final = 2000
ROTATION_OVERLAP: Final = timedelta(hours=24)  # the previous secret still signs this long
_USER_AGENT: Final = "seatmap-webhooks/1"

sent: Final = Counter(
    "seatmap_outgoing_webhooks_total",
    "Outgoing webhook attempts to integrators, by outcome: delivered (2xx), failed (retried later), "
    "dead (the last attempt failed, or the endpoint is disabled or not allowed).",
    ["outcome"],
)


def new_secret() -> str:
    """A signing secret: 256 random bits; its UTF-8 bytes are the HMAC key."""
    return "whsec_" + secrets.token_urlsafe(32)


def job_key(delivery_id: int) -> str:
    return f"webhook:{delivery_id}"


# ---- where webhooks may go (pure) ----------------------------------------------------------------


def _private_ip(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


def check_url(url: str, *, allow_private: bool) -> str:
    """The endpoint URL if webhooks may go there; `InvalidInput` (422, `$.url`) saying why not."""

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"The webhook URL {why}.", path="$.url")

    if len(url) > MAX_URL:
        raise refuse(f"is longer than {MAX_URL} characters")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise refuse("must be plain ASCII without spaces (punycode and %-escapes for the rest)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise refuse("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise refuse("has no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("must not carry a user name or password (the signature authenticates us)")
    if parts.fragment:
        raise refuse("must not have a #fragment")
    if not allow_private and (host == "localhost" or host.endswith(".localhost") or _private_ip(host)):
        raise refuse("points at a loopback or private address (SEATMAP_WEBHOOK_ALLOW_PRIVATE allows it)")
    return url


def check_event_types(types: Sequence[str]) -> list[str]:
    """The subscribed types, deduplicated in our order; `InvalidInput` for an unknown one."""
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown or not types:
        raise InvalidInput(
            f"event_types must be some of {', '.join(EVENT_TYPES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            path="$.event_types",
        )
    return [t for t in EVENT_TYPES if t in types]


def signature(secret: str, previous: str | None, body: bytes, timestamp: int) -> str:
    """`t=…,v1=…` with the secret, plus a second `v1` with the previous one while it overlaps."""
    header = sign(secret.encode(), body, timestamp)
    if previous is not None and not hmac.compare_digest(previous, secret):
        header += ",v1=" + sign(previous.encode(), body, timestamp).rpartition("v1=")[2]
    return header


# ---- emitting (in the caller's transaction) ------------------------------------------------------

SUBSCRIBED: Final = """
SELECT coalesce(array_agg(DISTINCT t), '{}') FROM webhook_endpoints, unnest(event_types) t WHERE enabled
"""
# The event only if some endpoint wants it, and its deliveries, in one statement.
EMIT: Final = """
WITH targets AS (
    SELECT id FROM webhook_endpoints WHERE enabled AND $2 = ANY(event_types)
), e AS (
    INSERT INTO webhook_events (id, type, body, screening_id)
    SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM targets)
    RETURNING id
)
INSERT INTO webhook_deliveries (endpoint_id, event_id)
SELECT t.id, e.id FROM targets t, e ORDER BY t.id
RETURNING id
"""


async def subscribed(conn: AnyConnection) -> frozenset[str]:
    """The event types some enabled endpoint wants (usually none: then nothing is built)."""
    return frozenset(await conn.fetchval(SUBSCRIBED))


def event_body(event_id: str, type_: str, data: Mapping[str, Any], created: int) -> bytes:
    return msgspec.json.encode({"id": event_id, "type": type_, "created": created, "data": data})


async def emit(
    conn: AnyConnection,
    settings: Settings,
    type_: EventType,
    data: Mapping[str, Any],
    *,
    screening_id: int | None = None,
) -> int:
    """Write one event and its deliveries and jobs in the caller's transaction; how many."""
    event_id = f"evt_{uuid.uuid4().hex}"
    body = event_body(event_id, type_, data, int(time.time()))
    ids = [r["id"] for r in await conn.fetch(EMIT, event_id, type_, body, screening_id)]
    await jobs.enqueue_many(
        conn, JOB, [{"delivery_id": i} for i in ids], [job_key(i) for i in ids],
        max_attempts=settings.job_max_attempts,
    )  # fmt: skip
    return len(ids)


ORDER_DATA: Final = """
SELECT o.id AS order_id, o.screening_id, o.channel, o.status, o.total, o.currency, o.paid_at,
       u.email,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                     'code', t.code, 'seat', t.seat_label, 'area', t.ga_area, 'category', t.category,
                     'price', t.price, 'holder_name', t.holder_name) ORDER BY t.id)
                 FROM tickets t WHERE t.order_id = o.id AND t.status = 'valid'), '[]') AS tickets
FROM orders o LEFT JOIN users u ON u.id = o.user_id
WHERE o.id = $1
"""
ORDER_SEATS: Final = """
SELECT screening_id, seat_label, ga_area FROM order_lines l JOIN orders o ON o.id = l.order_id
WHERE l.order_id = $1 ORDER BY l.position
"""


def seat_changes(rows: Sequence[Any], state: str) -> list[dict[str, Any]]:
    """The live feed's change shape: one per seat, one per GA area with its unit count. Pure."""
    changes: list[dict[str, Any]] = [
        {"seat": r["seat_label"], "state": state} for r in rows if r["seat_label"]
    ]
    areas: dict[str, int] = {}
    for r in rows:
        if r["ga_area"] is not None:
            areas[r["ga_area"]] = areas.get(r["ga_area"], 0) + 1
    changes += [{"area": a, "units": n, "state": state} for a, n in sorted(areas.items())]
    return changes


async def order_paid_events(conn: AnyConnection, settings: Settings, order_id: int) -> None:
    """In a sale's transaction (web payment or box office), after its tickets: `order.paid` and
    the seats now `sold`."""
    wanted = await subscribed(conn)
    if not wanted & {"order.paid", "seat.status_changed"}:
        return
    lines = await conn.fetch(ORDER_SEATS, order_id)
    if not lines:
        return
    screening_id = lines[0]["screening_id"]
    if "order.paid" in wanted:
        row = await conn.fetchrow(ORDER_DATA, order_id)
        assert row is not None
        await emit(conn, settings, "order.paid", dict(row), screening_id=screening_id)
    if "seat.status_changed" in wanted:
        data = {"screening_id": screening_id, "order_id": order_id, "changes": seat_changes(lines, "sold")}
        await emit(conn, settings, "seat.status_changed", data, screening_id=screening_id)


async def seats_freed_event(conn: AnyConnection, settings: Settings, order_id: int) -> None:
    """In a refund's transaction that voided the order's tickets: its seats are `free` again."""
    if "seat.status_changed" not in await subscribed(conn):
        return
    lines = await conn.fetch(ORDER_SEATS, order_id)
    if lines:
        screening_id = lines[0]["screening_id"]
        data = {"screening_id": screening_id, "order_id": order_id, "changes": seat_changes(lines, "free")}
        await emit(conn, settings, "seat.status_changed", data, screening_id=screening_id)


CROSSING: Final = "SELECT sold, sellable FROM screening_alerts WHERE screening_id = $1 AND kind = $2"


async def _sold_out(conn: AnyConnection, settings: Settings, screening_id: int, kind: str) -> None:
    """`screening.sold_out`, in the transaction where alerts.py records the sell-out: once per
    screening, however many sales race for its last seats and on however many processes."""
    if kind == alerts.SOLD_OUT:
        row = await conn.fetchrow(CROSSING, screening_id, kind)
        data = {"screening_id": screening_id, **(dict(row) if row is not None else {})}
        await emit(conn, settings, "screening.sold_out", data, screening_id=screening_id)


alerts.CROSSED.append(_sold_out)


# ---- delivering (the `webhook` job) -------------------------------------------------------------------

TO_DELIVER: Final = """
SELECT d.id, d.status, d.event_id, e.type, e.body, p.url, p.enabled, p.secret,
       CASE WHEN p.previous_secret_until > now() THEN p.previous_secret END AS previous_secret
FROM webhook_deliveries d
JOIN webhook_events e ON e.id = d.event_id
JOIN webhook_endpoints p ON p.id = d.endpoint_id
WHERE d.id = $1
"""
RECORD_ATTEMPT: Final = """
WITH a AS (
    INSERT INTO webhook_attempts (delivery_id, status_code, error, duration_ms) VALUES ($1, $2, $3, $4)
)
UPDATE webhook_deliveries
SET attempts = attempts + 1, last_status = $2, last_error = $3, last_attempt_at = now(),
    status = CASE WHEN $5 THEN 'delivered' WHEN $6 AND status = 'pending' THEN 'dead' ELSE status END,
    delivered_at = CASE WHEN $5 THEN now() ELSE delivered_at END
WHERE id = $1
"""


class Refused(Exception):
    """The attempt was not taken (an error status, a redirect, no answer)."""


async def _destination_allowed(url: str) -> bool:
    """After DNS: does every address the host resolves to lie outside private ranges?"""
    parts = urlsplit(url)
    assert parts.hostname is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port)
    return all(not _private_ip(str(info[4][0])) for info in infos)


class Sender:
    """Delivers `webhook` jobs through one pooled HTTP client (made on first use, closed by the
    worker that owns this sender)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # No proxy from the environment, no redirects followed (a 3xx is a failed attempt,
            # never a hop to wherever the integrator's server points).
            self._client = httpx.AsyncClient(
                timeout=self.rt.settings.webhook_timeout, trust_env=False, follow_redirects=False,
                headers={"user-agent": _USER_AGENT},
            )  # fmt: skip
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver(self, job: jobs.Job) -> None:
        """One attempt of one delivery; raises (the outbox retries) unless the endpoint took it."""
        delivery_id = int(job.payload["delivery_id"])
        pool = self.rt.pool
        async with pool.acquire() as conn:
            row = await conn.fetchrow(TO_DELIVER, delivery_id)
        if row is None or row["status"] == "delivered":
            return  # the endpoint was deleted, or an earlier run delivered it and died before recording
        last = job.attempts >= job.max_attempts
        if not row["enabled"]:
            await self._record(delivery_id, None, "the endpoint is disabled", 0, ok=False, dead=True)
            sent.labels("dead").inc()
            raise jobs.GiveUp("the endpoint is disabled")
        allow = self.rt.settings.webhook_allow_private
        if not allow and not await _destination_allowed(row["url"]):
            await self._record(
                delivery_id, None, "the URL resolves to a private address", 0, ok=False, dead=True
            )
            sent.labels("dead").inc()
            raise jobs.GiveUp("the URL resolves to a private address (SEATMAP_WEBHOOK_ALLOW_PRIVATE)")
        body: bytes = row["body"]
        headers = {
            "content-type": "application/json",
            "webhook-id": row["event_id"],
            "seatmap-event": row["type"],
            "seatmap-delivery": str(delivery_id),
            "seatmap-attempt": str(job.attempts),
            SIGNATURE_HEADER: signature(row["secret"], row["previous_secret"], body, int(time.time())),
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = await self.client().post(row["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        else:
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {response.text[:200]}"
        elapsed = int((time.monotonic() - started) * 1000)
        await self._record(delivery_id, status, error, elapsed, ok=error is None, dead=last)
        if error is not None:
            sent.labels("dead" if last else "failed").inc()
            raise Refused(error)
        sent.labels("delivered").inc()

    async def _record(
        self, delivery_id: int, status: int | None, error: str | None, ms: int, *, ok: bool, dead: bool
    ) -> None:
        async with self.rt.pool.acquire() as conn:
            await conn.execute(RECORD_ATTEMPT, delivery_id, status, error, ms, ok, dead)
