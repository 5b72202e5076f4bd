"""The box office: counter sales on the same inventory as the web, through a hold, all or nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from seatmap.runtime import Runtime
from tests.shopping import buy, hold, seat_states, table_counts
from tests.support import Server, User, Viewer, make_screening, quick_users


@pytest.fixture
async def screening(rt: Runtime) -> int:
    return await make_screening(rt, ["VVVVSSSS", "SSSSSSSS"], ga=[("Standing", 3)])


async def sell(client: httpx.AsyncClient, staff: User, screening: int, **body: Any) -> httpx.Response:
    return await client.post(
        "/api/boxoffice/sales", json={"screening_id": screening, **body}, headers=staff.headers
    )


async def test_counter_sale_returns_tickets_and_every_viewer_sees_sold(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """Cash for two seats and two standing places: 201 with a paid order, one ticket each, the
    payment recorded as cash by this staff member, and viewers see the seats sold."""
    (staff,) = await quick_users(rt, 1, "staff")
    viewer = await Viewer.connect(server, screening)
    await viewer.next("snapshot")
    r = await sell(
        client, staff, screening, seats=["A1", "A2"], ga={"area": "Standing", "quantity": 2},
        payment_method="cash", holder_names=["Tono"],
    )  # fmt: skip
    assert r.status_code == 201, r.text
    sale = r.json()
    assert (sale["status"], sale["channel"], sale["total"]) == ("paid", "boxoffice", 200000)
    assert [(t.get("seat"), t.get("area"), t.get("holder_name")) for t in sale["tickets"]] == [
        ("A1", None, "Tono"),
        ("A2", None, None),
        (None, "Standing", None),
        (None, "Standing", None),
    ]
    assert sale["payments"][0]["provider"] == "cash" and sale["payments"][0]["status"] == "paid"
    seen: dict[str, str] = {}
    while seen.get("A1") != "sold" or seen.get("A2") != "sold":
        for change in (await viewer.next("delta"))["changes"]:
            if change.get("seat"):
                seen[change["seat"]] = change["state"]
    await viewer.close()
    assert await seat_states(rt, screening) == {"A1": "sold", "A2": "sold"}
    async with rt.pool.acquire() as conn:
        sold_by = await conn.fetchval("SELECT sold_by FROM orders WHERE id = $1", sale["id"])
    assert sold_by == staff.id
    r = await sell(
        client, staff, screening, ga={"area": "Standing", "quantity": 2}, payment_method="card_present"
    )
    assert (r.status_code, r.json()["error"]["code"]) == (409, "sold_out")


async def test_counter_cannot_take_seats_a_web_buyer_holds(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """A seat held online is refused at the counter with 409 naming it, and nothing is written."""
    (alice,) = await quick_users(rt, 1)
    (staff,) = await quick_users(rt, 1, "staff")
    await hold(client, alice, screening, ["B1", "B2"])
    before = await table_counts(rt)
    r = await sell(client, staff, screening, seats=["B2", "B3"], payment_method="cash")
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["seats"]) == (
        409,
        "seat_taken",
        ["B2"],
    )
    assert await table_counts(rt) == before
    assert await seat_states(rt, screening) == {"B1": "held", "B2": "held"}


async def test_postgres_guard_refuses_a_sold_seat_redis_forgot(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Bypass Redis (it wrongly shows a sold seat free): the counter sale fails on the unique
    index with 409, writes no order, payment or ticket, and leaves no hold behind."""
    (alice,) = await quick_users(rt, 1)
    (staff,) = await quick_users(rt, 1, "staff")
    await buy(client, alice, screening, ["B5", "B6"])
    await rt.redis.hdel(f"{rt.settings.redis_prefix}:{{scr:{screening}}}:seats", "B5", "B6")
    before = await table_counts(rt)
    r = await sell(
        client, staff, screening, seats=["B5", "B6"], payment_method="card_present", reference="T-1"
    )
    assert r.status_code == 409, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["seats"]) == ("seat_taken", ["B5", "B6"])
    assert await table_counts(rt) == before
    assert await seat_states(rt, screening) == {}


async def test_web_and_counter_race_for_the_same_seats(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Eight rounds of a web hold and a counter sale for the same seats at the same moment: each
    time exactly one wins, and no seat ever has two tickets."""
    buyers = await quick_users(rt, 8)
    (staff,) = await quick_users(rt, 1, "staff")
    wins = {"web": 0, "counter": 0}
    for i, buyer in enumerate(buyers):
        row, first = "AB"[i // 4], 2 * (i % 4) + 1
        seats = [f"{row}{first}", f"{row}{first + 1}"]
        web, counter = await asyncio.gather(
            client.post(
                "/api/holds", json={"screening_id": screening, "seats": seats}, headers=buyer.headers
            ),
            sell(client, staff, screening, seats=seats, payment_method="cash"),
        )
        assert sorted([web.status_code, counter.status_code]) == [201, 409], (web.text, counter.text)
        wins["web" if web.status_code == 201 else "counter"] += 1
    assert wins["web"] + wins["counter"] == 8
    async with rt.pool.acquire() as conn:
        doubled = await conn.fetchval(
            "SELECT count(*) FROM (SELECT seat_label FROM tickets GROUP BY seat_label HAVING count(*) > 1) d"
        )
        assert doubled == 0
        assert await conn.fetchval("SELECT count(*) FROM tickets") == 2 * wins["counter"]


async def test_box_office_is_staff_only_and_validates(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Customers get 403, anonymous 401; an unknown payment method or seat is 422 and holds nothing."""
    (alice,) = await quick_users(rt, 1)
    (staff,) = await quick_users(rt, 1, "staff")
    assert (await sell(client, alice, screening, seats=["A3"], payment_method="cash")).status_code == 403
    r = await client.post("/api/boxoffice/sales", json={"screening_id": screening, "seats": ["A3"]})
    assert r.status_code == 401
    r = await sell(client, staff, screening, seats=["A3", "A4"], payment_method="voucher")
    assert r.status_code == 422 and r.json()["error"]["path"] == "$.payment_method"
    r = await sell(client, staff, screening, seats=["Z9"], payment_method="cash")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_seats")
    r = await sell(
        client, staff, screening, seats=["A3", "A4"], payment_method="cash", holder_names=["a"] * 3
    )
    assert r.status_code == 422
    assert await seat_states(rt, screening) == {}
    assert (await table_counts(rt))["orders"] == 0


async def test_till_reference_used_before_is_a_clear_409(rt: Runtime, client: httpx.AsyncClient) -> None:
    """A card receipt number already recorded for a sale of another screening is refused with 409
    `reference_used` naming that sale; nothing is written and the seats stay free."""
    (staff,) = await quick_users(rt, 1, "staff")
    first, second = await make_screening(rt, ["SSSS"]), await make_screening(rt, ["SSSS"])
    r = await sell(client, staff, first, seats=["A1"], payment_method="card_present", reference="RCPT-7")
    assert r.status_code == 201, r.text
    first_order = r.json()["id"]
    before = await table_counts(rt)
    r = await sell(client, staff, second, seats=["A1"], payment_method="card_present", reference="RCPT-7")
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert (error["code"], error["order_id"]) == ("reference_used", first_order)
    assert "RCPT-7" in error["message"]
    assert await table_counts(rt) == before
    assert await seat_states(rt, second) == {}
    # The same receipt number from the cash drawer is another payment method: no clash.
    r = await sell(client, staff, second, seats=["A1"], payment_method="cash", reference="RCPT-7")
    assert r.status_code == 201, r.text


async def test_staff_token_of_a_deleted_account_is_refused(rt: Runtime, client: httpx.AsyncClient) -> None:
    """A counter sale with the token of a staff account deleted since is 401 `invalid_token`,
    never a 500, and leaves no hold behind."""
    screening = await make_screening(rt, ["SSSS"])
    (staff,) = await quick_users(rt, 1, "staff")
    async with rt.pool.acquire() as conn:
        await conn.execute("DELETE FROM users WHERE id = $1", staff.id)
    r = await sell(client, staff, screening, seats=["A1"], payment_method="cash")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_token"), r.text
    assert await seat_states(rt, screening) == {}
    assert (await table_counts(rt))["orders"] == 0
