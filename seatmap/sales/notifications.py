"""Notifications: what a customer is told (booking confirmed, refund done, screening cancelled).

A change that should be told writes a `notify` job in its own transaction (`notify`,
`notify_many`), so the message is never lost and never sent for a change that rolled back.
The worker renders it from the current rows and, in one transaction, records it in
`notifications` (what `GET /api/notifications` shows the user) and puts the mail in the mail
outbox, which sends it by SMTP when `SEATMAP_SMTP_URL` is set and stores it otherwise. The
job's dedupe key is the notification's key too: a job that runs twice tells the user once.
"""

from __future__ import annotations

import contextlib
import zoneinfo
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap import jobs, mail
from seatmap.accounts.auth import require
from seatmap.api import Page, cursor_id, documented, encode_cursor, int_param, query_int, respond
from seatmap.db import AnyConnection
from seatmap.errors import ConfigError
from seatmap.money import format_amount
from seatmap.runtime import Runtime, runtime
from seatmap.settings import Settings

JOB: Final = "notify"
Kind = Literal["booking_confirmed", "refund_done", "screening_cancelled"]


class Notification(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`kind`: booking_confirmed | refund_done | screening_cancelled, and for admins and
    organizers screening_nearly_sold_out | screening_sold_out (alerts.py: no `order_id`)."""

    id: int
    kind: str
    subject: str
    body: str
    created_at: datetime
    order_id: int | None = None
    screening_id: int | None = None


class NotificationPage(Page):
    items: list[Notification]


# Everything a message says, read when it is sent (an order's refund, its screening, the film).
DETAILS: Final = """
SELECT u.email, u.name, o.id AS order_id, o.total, o.currency, o.screening_id,
       s.starts_at, s.cancel_reason, m.title, c.name AS cinema, c.timezone,
       (SELECT count(*) FROM order_lines WHERE order_id = o.id) AS tickets,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('code', t.code, 'seat', t.seat_label,
                'area', t.ga_area, 'holder', t.holder_name) ORDER BY t.id), '[]')
        FROM tickets t WHERE t.order_id = o.id AND t.status = 'valid') AS ticket_list,
       (SELECT amount FROM refunds WHERE id = $3) AS refunded,
       EXISTS (SELECT 1 FROM notifications WHERE dedupe_key = $4) AS told
FROM users u, orders o
JOIN screenings s ON s.id = o.screening_id
JOIN movies m ON m.id = s.movie_id
JOIN auditoriums a ON a.id = s.auditorium_id
JOIN cinemas c ON c.id = a.cinema_id
WHERE u.id = $1 AND o.id = $2
"""
RECORD: Final = """
INSERT INTO notifications (user_id, kind, subject, body, order_id, screening_id, dedupe_key, mail_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""
LIST: Final = """
SELECT id, kind, subject, body, created_at, order_id, screening_id FROM notifications
WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3
"""


def key(kind: Kind, ref: int) -> str:
    """The dedupe key: one notification of a kind per order (or refund)."""
    return f"notify:{kind}:{ref}"


async def notify(
    conn: AnyConnection,
    settings: Settings,
    kind: Kind,
    *,
    user_id: int,
    order_id: int,
    refund_id: int | None = None,
) -> None:
    """Queue one notification in the caller's transaction (once per order and kind)."""
    await notify_many(conn, settings, kind, [(user_id, order_id, refund_id)])


async def notify_many(
    conn: AnyConnection, settings: Settings, kind: Kind, rows: Sequence[tuple[int, int, int | None]]
) -> int:
    """Queue notifications for (user, order, refund or None) rows in one statement."""
    keys = [key(kind, refund if refund is not None else order) for _, order, refund in rows]
    payloads = [
        {"kind": kind, "user_id": user, "order_id": order, "refund_id": refund, "key": k}
        for (user, order, refund), k in zip(rows, keys, strict=True)
    ]
    return await jobs.enqueue_many(conn, JOB, payloads, keys, max_attempts=settings.job_max_attempts)


def ticket_lines(tickets: Sequence[Any], base_url: str | None) -> str:
    """One line per ticket for the booking mail: seat (or area), holder, code, and the link to
    its QR code, which is what the door scans (no link without a public URL). Pure."""
    lines = []
    for t in tickets:
        where = f"Seat {t['seat']}" if t.get("seat") else (t.get("area") or "Ticket")
        holder = f" ({t['holder']})" if t.get("holder") else ""
        link = f", QR code {base_url}/api/tickets/{t['code']}/qr.svg" if base_url else ""
        lines.append(f"- {where}{holder}: code {t['code']}{link}")
    return "\n".join(lines)


def public_url(settings: Settings) -> str | None:
    """Where the mail's links point: SEATMAP_PUBLIC_URL (or dev mode's). A worker started without
    it still mails the ticket codes, without links."""
    try:
        return settings.base_url
    except ConfigError:
        return None


def render(kind: str, row: Any, base_url: str | None = None) -> tuple[str, str]:
    """(subject, body) of a notification from its DETAILS row. Pure. `base_url` makes the
    booking mail's links absolute (`public_url`)."""
    when = row["starts_at"].astimezone(zoneinfo.ZoneInfo(row["timezone"])).strftime("%A %d %B %Y, %H:%M")
    show = f"{row['title']} at {row['cinema']}, {when}"
    greeting = f"Hello {row['name']}," if row["name"] else "Hello,"
    order = f"order {row['order_id']}"
    if kind == "booking_confirmed":
        subject = f"Your tickets for {row['title']}"
        text = (
            f"your booking is confirmed: {row['tickets']} ticket(s) for {show} "
            f"({order}, {format_amount(row['total'], row['currency'])}). "
            "Show the QR codes in your order at the door."
        )
        tickets = row.get("ticket_list") or []
        if tickets:
            text += f"\n\n{ticket_lines(tickets, base_url)}"
        if base_url:
            text += f"\n\nYour order: {base_url}/#/order/{row['order_id']}"
    elif kind == "refund_done":
        amount = row["refunded"] if row["refunded"] is not None else row["total"]
        subject = f"Your refund for {row['title']}"
        text = f"we have refunded {format_amount(amount, row['currency'])} for {order} ({show})."
    elif kind == "screening_cancelled":
        subject = f"Cancelled: {row['title']}"
        reason = f" Reason: {row['cancel_reason']}" if row["cancel_reason"] else ""
        text = (
            f"we are sorry: {show} has been cancelled.{reason} If you paid for {order}, "
            "the money is on its way back to you; we will tell you when it is refunded."
        )
    else:
        raise ValueError(f"unknown notification kind {kind!r}")
    return subject, f"{greeting}\n\n{text}\n\nseatmap\n"


class _ToldMeanwhile(Exception):
    """Another run of the same job recorded it first: undo this run's mail."""


async def deliver(rt: Runtime, job: jobs.Job) -> None:
    """The `notify` job: record the notification and queue its mail, once."""
    p = job.payload
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(DETAILS, p["user_id"], p["order_id"], p.get("refund_id"), p["key"])
        if row is None or row["told"]:
            return  # nobody left to tell (user or order gone), or told already (this job ran before)
        subject, body = render(p["kind"], row, public_url(rt.settings))
        with contextlib.suppress(_ToldMeanwhile):
            async with conn.transaction():
                mail_id = await mail.enqueue(
                    conn, rt.settings, to=row["email"], subject=subject, body=body, user_id=p["user_id"]
                )
                recorded = await conn.fetchval(
                    RECORD, p["user_id"], p["kind"], subject, body, p["order_id"], row["screening_id"],
                    p["key"], mail_id,
                )  # fmt: skip
                if recorded is None:
                    raise _ToldMeanwhile


@documented(
    "Your notifications, newest first (booking confirmed, refund done, screening cancelled; for "
    "admins and organizers, screenings nearly sold out and sold out)",
    query=("cursor", int_param("limit", 1, 100)),
    responses={200: NotificationPage},
    auth="customer",
    tags=("notifications",),
)
async def list_notifications(request: Request) -> Response:
    who = await require(request)
    limit = query_int(request, "limit", 20, minimum=1, maximum=100)
    before = cursor_id(request) or 2**63 - 1
    async with runtime(request).pool.acquire() as conn:
        rows = await conn.fetch(LIST, who.user_id, before, limit + 1)
    items = [Notification(**dict(r)) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return respond(NotificationPage(items=items, next_cursor=next_cursor))


routes: list[BaseRoute] = [
    Route("/notifications", list_notifications, methods=["GET"]),
]
