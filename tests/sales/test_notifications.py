"""Notifications: told once, by mail (SMTP when configured, stored otherwise), listed per user."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from seatmap import jobs
from seatmap.jobs import Policy, Worker
from seatmap.runtime import Runtime
from seatmap.sales import notifications
from tests.refunding import count, eventually, paid_orders, worker
from tests.smtp import SMTPSink
from tests.support import Server, make_screening

FAST = Policy(concurrency=4, backoff=0.05, max_backoff=0.2, lease=5.0, poll_interval=0.1)


@contextlib.asynccontextmanager
async def delivering(rt: Runtime) -> AsyncIterator[None]:
    """The `notify` jobs worked off in this process, by the same handler the worker runs."""
    assert rt.settings.database_url is not None

    async def notify(job: jobs.Job) -> None:
        await notifications.deliver(rt, job)

    stop = asyncio.Event()
    task = asyncio.create_task(
        Worker(rt.pool, rt.settings.database_url, {notifications.JOB: notify}, FAST).run(stop)
    )
    try:
        yield
    finally:
        stop.set()
        await task


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "name": "Ada",
        "order_id": 42,
        "total": 150000,
        "currency": "IDR",
        "starts_at": datetime(2030, 5, 17, 12, 30, tzinfo=UTC),
        "timezone": "Asia/Jakarta",
        "title": "Solaris",
        "cinema": "Grand",
        "cancel_reason": "The projector is broken.",
        "tickets": 3,
        "refunded": 150000,
    }
    row.update(changes)
    return row


def test_messages_name_the_show_in_the_cinemas_time_and_the_money() -> None:
    """Each kind says what happened to which show (local time), and how much, in plain words."""
    subject, body = notifications.render("booking_confirmed", _row())
    assert subject == "Your tickets for Solaris"
    assert "3 ticket(s) for Solaris at Grand, Friday 17 May 2030, 19:30" in body
    assert "order 42, 150,000 IDR" in body and body.startswith("Hello Ada,")
    subject, body = notifications.render("refund_done", _row(refunded=99950, currency="EUR", name=""))
    assert subject == "Your refund for Solaris" and "refunded 999.50 EUR for order 42" in body
    assert body.startswith("Hello,\n")
    subject, body = notifications.render("screening_cancelled", _row())
    assert subject == "Cancelled: Solaris"
    assert "has been cancelled. Reason: The projector is broken." in body
    with pytest.raises(ValueError):
        notifications.render("lottery_won", _row())


async def test_a_notification_is_told_once_and_listed_to_its_user_only(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Queued twice, delivered once: one row, one mail; the user pages through theirs, newest first."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    orders = await paid_orders(rt, screening, 3)
    owner = orders[0].user_id
    async with rt.pool.acquire() as conn:
        for kind in ("booking_confirmed", "screening_cancelled", "refund_done"):
            await notifications.notify(conn, rt.settings, kind, user_id=owner, order_id=orders[0].id)
        # The same again (a retried change): no second job, no second message.
        await notifications.notify(
            conn, rt.settings, "booking_confirmed", user_id=owner, order_id=orders[0].id
        )
        await notifications.notify(
            conn, rt.settings, "booking_confirmed", user_id=orders[1].user_id, order_id=orders[1].id
        )
    async with delivering(rt):
        await eventually(lambda: _done(rt))
    assert await count(rt, "SELECT count(*) FROM mail_outbox WHERE status = 'stored'") == 4
    me = orders[0].buyer
    seen: list[str] = []
    ids: list[int] = []
    url = "/api/notifications?limit=2"
    while url:
        r = await client.get(url, headers=me.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [n["kind"] for n in page["items"]]
        ids += [n["id"] for n in page["items"]]
        assert all(n["order_id"] == orders[0].id for n in page["items"])
        url = f"/api/notifications?limit=2&cursor={page['next_cursor']}" if page.get("next_cursor") else ""
    assert sorted(seen) == ["booking_confirmed", "refund_done", "screening_cancelled"]
    assert ids == sorted(ids, reverse=True)


async def _done(rt: Runtime) -> bool:
    return await count(rt, "SELECT count(*) FROM jobs WHERE status <> 'done'") == 0


async def test_with_smtp_the_worker_mails_the_cancellation_to_each_buyer(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """A real worker process with SMTP configured sends each buyer the cancellation notice."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    orders = await paid_orders(rt, screening, 2)
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE screenings SET cancel_reason = 'Flooded' WHERE id = $1", screening)
        told = [(o.user_id, o.id, None) for o in orders]
        await notifications.notify_many(conn, rt.settings, "screening_cancelled", told)
    async with SMTPSink() as sink, worker(rt.settings, tmp_path / "worker.log", SEATMAP_SMTP_URL=sink.url()):
        await sink.wait_for(lambda: len(sink.messages) == 2, 15)
    recipients = sorted(str(m["To"]) for m in sink.messages)
    assert recipients == sorted(o.buyer.email for o in orders)
    assert all("Reason: Flooded" in m.get_content() for m in sink.messages)
    assert await count(rt, "SELECT count(*) FROM notifications WHERE mail_id IS NOT NULL") == 2
