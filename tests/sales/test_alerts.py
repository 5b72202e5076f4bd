"""Near-sold-out alerts: admins hear once when a screening passes its threshold or sells out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from seatmap import jobs
from seatmap.jobs import Policy, Worker
from seatmap.runtime import Runtime
from seatmap.sales import alerts
from seatmap.settings import Settings
from tests.refunding import eventually
from tests.support import Server, User, make_screening, quick_users
from tests.test_multiprocess import web_processes

FAST = Policy(concurrency=4, backoff=0.05, max_backoff=0.2, lease=5.0, poll_interval=0.1)


@contextlib.asynccontextmanager
async def delivering(rt: Runtime) -> AsyncIterator[None]:
    """The `alert` jobs worked off in this process, by the handler the worker runs."""
    assert rt.settings.database_url is not None

    async def alert(job: jobs.Job) -> None:
        await alerts.deliver(rt, job)

    stop = asyncio.Event()
    task = asyncio.create_task(Worker(rt.pool, rt.settings.database_url, {alerts.JOB: alert}, FAST).run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.mark.parametrize(
    ("sold", "sellable", "threshold", "reached"),
    [
        (38, 48, 0.9, []),  # seed 001: 38 of 48 is 79%
        (43, 48, 0.9, []),
        (44, 48, 0.9, [alerts.NEARLY]),  # 90% of 48 is 43.2: the 44th seat passes it
        (47, 48, 0.9, [alerts.NEARLY]),
        (48, 48, 0.9, [alerts.NEARLY, alerts.SOLD_OUT]),
        (9, 10, 0.9, [alerts.NEARLY]),  # exactly 90%
        (1, 1, 0.9, [alerts.NEARLY, alerts.SOLD_OUT]),
        (0, 0, 0.9, []),  # everything blocked: nothing to sell, nothing to tell
        (5, 10, 0.5, [alerts.NEARLY]),
        (10, 10, 1.0, [alerts.NEARLY, alerts.SOLD_OUT]),
    ],
)
def test_thresholds_reached(sold: int, sellable: int, threshold: float, reached: list[str]) -> None:
    """Nearly sold out is at least the threshold share of what can be sold; sold out is all of it."""
    assert alerts.crossed(sold, sellable, threshold) == reached


async def sell(client: httpx.AsyncClient, staff: User, screening: int, seats: list[str]) -> httpx.Response:
    body: dict[str, Any] = {"screening_id": screening, "seats": seats, "payment_method": "cash"}
    return await client.post("/api/boxoffice/sales", json=body, headers=staff.headers)


async def sell_all(client: httpx.AsyncClient, staff: User, screening: int, seats: list[str]) -> None:
    """Sold in sales of at most 10 seats (a hold's limit)."""
    for i in range(0, len(seats), 10):
        r = await sell(client, staff, screening, seats[i : i + 10])
        assert r.status_code == 201, r.text


async def notifications_of(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    r = await client.get("/api/notifications", headers=user.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def alert_counts(rt: Runtime, screening: int) -> dict[str, int]:
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT kind, count(*) AS n FROM notifications WHERE screening_id = $1 GROUP BY kind", screening
        )
    return {r["kind"]: r["n"] for r in rows}


LABELS = [f"{row}{n}" for row in "ABCDEF" for n in range(1, 9)]  # 48 seats, as in seed 001


async def test_seed_001_admins_and_the_cinemas_organizers_hear_at_the_threshold_once(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """38 of 48 seats sold tells nobody; the 44th (90%) tells each enabled admin and the
    organizer of this cinema once, by mail and in their notifications; later sales below sold
    out tell nothing more; another cinema's organizer, a disabled admin and a customer hear nothing."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 6, strand_rule=False)
    elsewhere = await make_screening(rt, ["SS"])
    admins = await quick_users(rt, 2, "admin")
    (gone,) = await quick_users(rt, 1, "admin")
    ours, theirs = await quick_users(rt, 2, "organizer")
    (staff,) = await quick_users(rt, 1, "staff")
    (customer,) = await quick_users(rt, 1)
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE users SET disabled_at = now() WHERE id = $1", gone.id)
        for organizer, of in ((ours, screening), (theirs, elsewhere)):
            await conn.execute(
                "INSERT INTO organizer_cinemas (user_id, cinema_id) SELECT $1, a.cinema_id"
                " FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id WHERE s.id = $2",
                organizer.id, of,
            )  # fmt: skip
    told_ones = [*admins, ours]
    async with delivering(rt):
        await sell_all(client, staff, screening, LABELS[:38])
        await asyncio.sleep(0.3)
        assert await alert_counts(rt, screening) == {}
        for seat in LABELS[38:44]:
            assert (await sell(client, staff, screening, [seat])).status_code == 201
        await eventually(lambda: _counted(rt, screening, {alerts.NEARLY: 3}))
        assert (await sell(client, staff, screening, LABELS[44:46])).status_code == 201
        await asyncio.sleep(0.3)
        assert await alert_counts(rt, screening) == {alerts.NEARLY: 3}
    for user in told_ones:
        (told,) = await notifications_of(client, user)
        assert told["kind"] == "screening_nearly_sold_out" and told["screening_id"] == screening
        assert "44 of 48 sellable seats sold (92%)" in told["body"], told
        assert "order_id" not in told
    for user in (customer, staff, theirs):
        assert await notifications_of(client, user) == []
    async with rt.pool.acquire() as conn:
        mails = await conn.fetch("SELECT recipient, subject FROM mail_outbox ORDER BY id")
        told_gone = await conn.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", gone.id)
    assert told_gone == 0
    assert sorted(m["recipient"] for m in mails) == sorted(u.email for u in told_ones)
    assert {m["subject"] for m in mails} == {"Nearly sold out: Test film"}


async def test_blocked_seats_are_not_sellable(rt: Runtime, server: Server, client: httpx.AsyncClient) -> None:
    """With 8 of 48 seats blocked, selling the other 40 is sold out: both alerts, once each."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 6, strand_rule=False)
    (admin,) = await quick_users(rt, 1, "admin")
    (staff,) = await quick_users(rt, 1, "staff")
    r = await client.post(
        f"/api/admin/screenings/{screening}/blocks", json={"seats": LABELS[40:]}, headers=admin.headers
    )
    assert r.status_code in (200, 201), r.text
    async with delivering(rt):
        await sell_all(client, staff, screening, LABELS[:35])
        assert await alert_counts(rt, screening) == {}
        assert (await sell(client, staff, screening, LABELS[35:40])).status_code == 201
        await eventually(lambda: _counted(rt, screening, {alerts.NEARLY: 1, alerts.SOLD_OUT: 1}))
    kinds = {n["kind"] for n in await notifications_of(client, admin)}
    assert kinds == {"screening_nearly_sold_out", "screening_sold_out"}


async def _counted(rt: Runtime, screening: int, expected: dict[str, int]) -> bool:
    return await alert_counts(rt, screening) == expected


async def test_twenty_buyers_racing_past_the_threshold_on_two_processes_alert_once(
    rt: Runtime, settings: Settings
) -> None:
    """20 counter sales of 2 seats each, all at once, half through each of two web processes,
    sell a 40-seat screening out: each admin is told "nearly sold out" once and "sold out" once."""
    screening = await make_screening(rt, ["SSSSSSSSSS"] * 4, strand_rule=False)
    labels = [f"{row}{n}" for row in "ABCD" for n in range(1, 11)]
    admins = await quick_users(rt, 2, "admin")
    sellers = await quick_users(rt, 20, "staff")
    async with web_processes(settings, 2) as servers:
        async with (
            httpx.AsyncClient(base_url=servers[0].http) as one,
            httpx.AsyncClient(base_url=servers[1].http) as two,
        ):
            # Load the screening into Redis first, so the race is in the sales, not in the load.
            assert (await one.get(f"/api/screenings/{screening}")).status_code == 200
            sales = [
                sell(one if i % 2 == 0 else two, seller, screening, labels[2 * i : 2 * i + 2])
                for i, seller in enumerate(sellers)
            ]
            answers = await asyncio.gather(*sales)
    assert [r.status_code for r in answers] == [201] * 20, [r.text for r in answers if r.status_code != 201]
    async with rt.pool.acquire() as conn:
        crossings = await conn.fetch("SELECT kind FROM screening_alerts WHERE screening_id = $1", screening)
        queued = await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'alert'")
    assert sorted(r["kind"] for r in crossings) == [alerts.NEARLY, alerts.SOLD_OUT]
    assert queued == 4  # two admins, two thresholds
    async with delivering(rt):
        await eventually(lambda: _counted(rt, screening, {alerts.NEARLY: 2, alerts.SOLD_OUT: 2}))
        await asyncio.sleep(0.3)
    assert await alert_counts(rt, screening) == {alerts.NEARLY: 2, alerts.SOLD_OUT: 2}
    async with rt.pool.acquire() as conn:
        mailed = await conn.fetch("SELECT recipient, count(*) AS n FROM mail_outbox GROUP BY recipient")
    assert {r["recipient"]: r["n"] for r in mailed} == {a.email: 2 for a in admins}
