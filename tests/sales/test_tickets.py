"""Tickets: unguessable codes, QR images, check-in at the door (once, atomically), lookups, and
the seat map rebuilt from tickets after a crash and a Redis flush."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from seatmap.runtime import Runtime
from tests.sales.test_orders import commit_without_publishing
from tests.shopping import buy, pending_order, start_payment
from tests.support import Server, Viewer, make_screening, quick_users


@pytest.fixture
async def screening(rt: Runtime) -> int:
    """Starts in 30 minutes: check-in (from 60 minutes before) is open."""
    return await make_screening(rt, ["SSSSSSSS"] * 3, starts_in=timedelta(minutes=30))


async def scan(client: httpx.AsyncClient, staff: Any, code: str, **body: Any) -> httpx.Response:
    return await client.post(f"/api/tickets/{code}/check-in", json=body, headers=staff.headers)


async def test_codes_are_unguessable_and_render_as_qr(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Each ticket has its own URL-safe code of at least 96 random bits, and a QR image as SVG."""
    (alice,) = await quick_users(rt, 1)
    paid = await buy(client, alice, screening, ["A1", "A2"])
    codes = [t["code"] for t in paid["tickets"]]
    assert len(set(codes)) == 2
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16,}", c) for c in codes)
    r = await client.get(f"/api/tickets/{codes[0]}/qr.svg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert r.text.startswith("<svg") and "<path" in r.text and codes[0] in r.text  # the title
    assert (await client.get("/api/tickets/AAAAAAAAAAAAAAAAAAAA/qr.svg")).status_code == 404
    assert (await client.get("/api/tickets/../qr.svg")).status_code == 404


async def test_first_scan_admits_and_every_later_scan_says_when_and_by_whom(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """200 with seat, screening and holder; then 409 already_used with the time, staff account
    and gate of the first scan."""
    (alice,) = await quick_users(rt, 1)
    doorman, other = await quick_users(rt, 2, "staff")
    paid = await buy(client, alice, screening, ["B1", "B2"], holder_names=["Rina"])
    code = paid["tickets"][0]["code"]
    r = await scan(client, doorman, code, screening_id=screening, gate="Door 2")
    assert r.status_code == 200, r.text
    admitted = r.json()
    assert (admitted["seat"], admitted["holder_name"], admitted["gate"]) == ("B1", "Rina", "Door 2")
    assert admitted["screening"]["id"] == screening and admitted["screening"]["title"] == "Test film"
    assert admitted["checked_in_by"] == {"id": doorman.id, "email": doorman.email}
    again = await scan(client, other, code)
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "already_used" and error["gate"] == "Door 2"
    assert error["checked_in_by"] == {"id": doorman.id, "email": doorman.email}
    assert datetime.fromisoformat(error["checked_in_at"]) == datetime.fromisoformat(admitted["checked_in_at"])
    # The order shows it used; the other ticket is still good.
    r = await client.get(f"/api/orders/{paid['id']}", headers=alice.headers)
    assert [t.get("checked_in_at") is not None for t in r.json()["tickets"]] == [True, False]
    assert (await scan(client, doorman, paid["tickets"][1]["code"])).status_code == 200


async def test_kiosks_scanning_the_same_ticket_at_once_admit_it_once(
    rt: Runtime, server: Server, screening: int
) -> None:
    """Four kiosks (own connections) scan each of six tickets at the same moment: each ticket is
    admitted exactly once and the other scans get already_used."""
    buyers = await quick_users(rt, 3)
    kiosks = await quick_users(rt, 4, "staff")
    codes: list[str] = []
    async with httpx.AsyncClient(base_url=server.http) as client:
        for buyer, seats in zip(buyers, (["C1", "C2"], ["C3", "C4"], ["C5", "C6"]), strict=True):
            codes += [t["code"] for t in (await buy(client, buyer, screening, seats))["tickets"]]
    clients = [httpx.AsyncClient(base_url=server.http) for _ in kiosks]
    try:
        for c in clients:  # open each kiosk's connection before the race
            await c.get("/healthz")
        for code in codes:
            replies = await asyncio.gather(
                *(
                    scan(c, kiosk, code, gate=f"kiosk {kiosk.id}")
                    for c, kiosk in zip(clients, kiosks, strict=True)
                )
            )
            statuses = sorted(r.status_code for r in replies)
            assert statuses == [200, 409, 409, 409], [r.text for r in replies]
            assert {r.json()["error"]["code"] for r in replies if r.status_code == 409} == {"already_used"}
    finally:
        for c in clients:
            await c.aclose()
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tickets WHERE checked_in_at IS NOT NULL") == 6


async def test_scans_refused_with_their_own_codes(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Another screening's kiosk, a void ticket, a screening not yet open for check-in, an
    unknown code: each is refused with its own code, and nothing is recorded."""
    (alice,) = await quick_users(rt, 1)
    (staff,) = await quick_users(rt, 1, "staff")
    paid = await buy(client, alice, screening, ["A5", "A6"])
    first, second = (t["code"] for t in paid["tickets"])
    r = await scan(client, staff, first, screening_id=screening + 1000)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "wrong_screening")
    assert r.json()["error"]["screening_id"] == screening
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE tickets SET status = 'void', voided_at = now() WHERE code = $1", second)
    r = await scan(client, staff, second)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "ticket_void")
    later = await make_screening(rt, ["SSSS"], starts_in=timedelta(hours=3))
    early = (await buy(client, alice, later, ["A1", "A2"]))["tickets"][0]["code"]
    r = await scan(client, staff, early)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "check_in_closed")
    opens = datetime.fromisoformat(r.json()["error"]["opens_at"])
    starts = opens + timedelta(seconds=rt.settings.checkin_opens_before)
    assert abs(starts - datetime.now(starts.tzinfo) - timedelta(hours=3)) < timedelta(minutes=1)
    assert (await scan(client, staff, "A" * 22)).status_code == 404
    r = await client.post(f"/api/tickets/{first}/check-in", content=b"{bad", headers=staff.headers)
    assert r.status_code == 400
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tickets WHERE checked_in_at IS NOT NULL") == 0
    # An empty body is fine: no kiosk screening, no gate.
    r = await client.post(f"/api/tickets/{first}/check-in", headers=staff.headers)
    assert r.status_code == 200 and "gate" not in r.json()


async def test_check_in_is_for_staff_and_lookup_for_staff_or_buyer(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Customers cannot check in (403), anonymous callers get 401; the buyer and staff can look a
    ticket up, another customer gets 404."""
    alice, bob = await quick_users(rt, 2)
    (staff,) = await quick_users(rt, 1, "staff")
    code = (await buy(client, alice, screening, ["B7", "B8"]))["tickets"][0]["code"]
    assert (await scan(client, alice, code)).status_code == 403
    assert (await client.post(f"/api/tickets/{code}/check-in")).status_code == 401
    for who in (alice, staff):
        r = await client.get(f"/api/tickets/{code}", headers=who.headers)
        assert r.status_code == 200 and r.json()["seat"] == "B7" and r.json()["status"] == "valid"
    assert (await client.get(f"/api/tickets/{code}", headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/tickets/{code}")).status_code == 401


async def test_crash_before_redis_then_flush_still_shows_sold(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """The payment commits, the process dies before Redis hears of it, then Redis loses the
    screening: a viewer joining afterwards sees the seats sold, rebuilt from the tickets."""
    (alice,) = await quick_users(rt, 1)
    made = await pending_order(client, alice, screening, ["C7", "C8"])
    payment = await start_payment(client, alice, made["id"])
    assert server.runtime is not None
    await commit_without_publishing(server.runtime, made, payment)
    keys = [k async for k in rt.redis.scan_iter(match=f"{rt.settings.redis_prefix}:{{scr:{screening}}}:*")]
    assert keys
    await rt.redis.delete(*keys)
    viewer = await Viewer.connect(server, screening)
    assert (await viewer.next("snapshot"))["seats"] == {"C7": "sold", "C8": "sold"}
    await viewer.close()
    # And a hold on them is refused.
    (bob,) = await quick_users(rt, 1)
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["C8"]}, headers=bob.headers
    )
    assert (r.status_code, r.json()["error"]["code"]) == (409, "seat_taken")


async def test_a_screening_with_tickets_cannot_be_deleted(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Once a ticket exists the admin's delete is 409 has_tickets (the foreign key restricts it)."""
    (alice,) = await quick_users(rt, 1)
    (admin,) = await quick_users(rt, 1, "admin")
    await buy(client, alice, screening, ["A3", "A4"])
    r = await client.delete(f"/api/admin/screenings/{screening}", headers=admin.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "has_tickets")
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM screenings WHERE id = $1", screening) == 1
