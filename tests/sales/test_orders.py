"""Orders from holds: the snapshot, idempotency keys, who sees what, cancelling, expiry, the sweeper."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from seatmap.runtime import Runtime
from seatmap.sales.settlement import LIVE_ORDER_COLUMNS, LiveOrder, sweep_once
from seatmap.settings import Settings
from tests.conftest import running
from tests.shopping import buy, get_order, hold, order, pending_order, seat_states, start_payment
from tests.support import TIMEOUT_FACTOR, Server, Viewer, make_screening, quick_users


@pytest.fixture
async def screening(rt: Runtime) -> int:
    """Row A premium, rows B-D standard, a 5-place standing area; premium costs more."""
    made = await make_screening(rt, ["PPPPPPPP", "SSSSSSSS", "SSSSSSSS", "SSSSSSSS"], ga=[("Floor", 5)])
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "UPDATE screening_prices SET amount = 75000 WHERE screening_id = $1 AND category = 'premium'",
            made,
        )
    return made


async def test_order_snapshots_the_hold_at_the_screening_prices(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """An order lists exactly the held seats with their categories and prices, the total, and
    lives as long as its hold, which is extended to the payment window."""
    (alice,) = await quick_users(rt, 1)
    held = await hold(client, alice, screening, ["A1", "A2", "B1"])
    r = await order(client, alice, held["token"], holder_names=["Budi", "", "Sari"])
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["status"] == "pending" and made["currency"] == "IDR" and made["channel"] == "web"
    assert made["lines"] == [
        {"seat": "A1", "category": "premium", "price": 75000, "holder_name": "Budi"},
        {"seat": "A2", "category": "premium", "price": 75000},
        {"seat": "B1", "category": "standard", "price": 50000, "holder_name": "Sari"},
    ]
    assert made["total"] == 200000 and made["tickets"] == [] and made["needs_refund"] is False
    expires = datetime.fromisoformat(made["expires_at"])
    window = timedelta(seconds=rt.settings.payment_window)
    assert window - timedelta(seconds=10) < expires - datetime.now(expires.tzinfo) <= window
    r = await client.get(f"/api/holds/{held['token']}", headers=alice.headers)
    assert datetime.fromisoformat(r.json()["expires_at"]) == expires
    # Prices changing later do not change the order.
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE screening_prices SET amount = 1 WHERE screening_id = $1", screening)
    assert (await get_order(client, alice, made["id"]))["total"] == 200000


async def test_ga_units_are_ordered_one_line_each(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Standing places become one line (later one ticket) per unit, at their area's category price."""
    (alice,) = await quick_users(rt, 1)
    held = await hold(client, alice, screening, ["B4"], ga={"area": "Floor", "quantity": 2})
    made = (await order(client, alice, held["token"])).json()
    assert [(line.get("seat"), line.get("area")) for line in made["lines"]] == [
        ("B4", None),
        (None, "Floor"),
        (None, "Floor"),
    ]
    assert made["total"] == 150000


async def test_idempotency_key_replays_the_same_order(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """The same key and body return the same order; the same key with another body is 422;
    no key is 422; a second order for the same hold (new key) is 409 order_exists."""
    (alice,) = await quick_users(rt, 1)
    held = await hold(client, alice, screening, ["C1", "C2"])
    first = await order(client, alice, held["token"], key="k-1")
    again = await order(client, alice, held["token"], key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = await order(client, alice, held["token"], key="k-1", holder_names=["X"])
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")
    r = await client.post("/api/orders", json={"hold_token": held["token"]}, headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["path"] == "header:Idempotency-Key"
    second = await order(client, alice, held["token"], key="k-2")
    assert second.status_code == 409
    assert second.json()["error"] == {
        "code": "order_exists",
        "message": "This hold already has an order; pay or cancel that one.",
        "order_id": first.json()["id"],
    }
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == 1


async def test_concurrent_retries_with_one_key_make_one_order(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Five copies of the same request at once (a flaky network retrying) make one order."""
    (alice,) = await quick_users(rt, 1)
    held = await hold(client, alice, screening, ["D1", "D2"])
    replies = await asyncio.gather(*(order(client, alice, held["token"], key="same") for _ in range(5)))
    assert {r.status_code for r in replies} == {201}
    assert len({r.json()["id"] for r in replies}) == 1


async def test_order_from_an_expired_hold_says_it_expired(rt: Runtime, settings: Settings) -> None:
    """Checking out a hold past its deadline answers 409 hold_expired (not 404), and makes no order."""
    from dataclasses import replace

    from seatmap.app import create_app

    screening = await make_screening(rt, ["SSSS"])
    short = replace(settings, hold_ttl=1, sweep_interval=60, expiry_notifications=False)
    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        (alice,) = await quick_users(rt, 1)
        held = await hold(client, alice, screening, ["A1"])
        await asyncio.sleep(1.2)
        r = await order(client, alice, held["token"])
        assert (r.status_code, r.json()["error"]["code"]) == (409, "hold_expired")
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == 0


async def test_order_needs_your_own_live_hold(rt: Runtime, client: httpx.AsyncClient, screening: int) -> None:
    """Someone else's hold, a released hold or a made-up token is 404; bad bodies are 422."""
    alice, bob = await quick_users(rt, 2)
    held = await hold(client, alice, screening, ["B7", "B8"])
    assert (await order(client, bob, held["token"])).status_code == 404
    assert (await order(client, alice, f"{screening}.{'x' * 24}")).status_code == 404
    assert (await order(client, alice, "garbage")).status_code == 404
    r = await order(client, alice, held["token"], holder_names=["a", "b", "c"])
    assert r.status_code == 422 and r.json()["error"]["path"] == "$.holder_names"
    r = await order(client, alice, held["token"], surprise=1)
    assert r.status_code == 422
    await client.delete(f"/api/holds/{held['token']}", headers=alice.headers)
    assert (await order(client, alice, held["token"])).status_code == 404
    r = await client.post("/api/orders", json={"hold_token": held["token"]}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 401
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == 0


async def test_orders_are_listed_newest_first_and_shown_to_buyer_and_staff(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """My orders come in pages, newest first; another customer gets 404 for mine, staff see it."""
    alice, bob = await quick_users(rt, 2)
    (staff,) = await quick_users(rt, 1, "staff")
    ids = []
    for _ in range(3):
        screening = await make_screening(rt, ["SSSS"])
        ids.append((await pending_order(client, alice, screening, ["A1", "A2"]))["id"])
    r = await client.get("/api/orders", params={"limit": 2}, headers=alice.headers)
    page = r.json()
    assert [o["id"] for o in page["items"]] == [ids[2], ids[1]]
    r = await client.get(
        "/api/orders", params={"limit": 2, "cursor": page["next_cursor"]}, headers=alice.headers
    )
    assert [o["id"] for o in r.json()["items"]] == [ids[0]] and r.json()["next_cursor"] is None
    assert (await client.get("/api/orders", headers=bob.headers)).json()["items"] == []
    assert (await client.get(f"/api/orders/{ids[0]}", headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/orders/{ids[0]}", headers=staff.headers)).status_code == 200
    assert (await client.get("/api/orders/999999", headers=alice.headers)).status_code == 404
    assert (
        await client.get("/api/orders", params={"cursor": "!!"}, headers=alice.headers)
    ).status_code == 422


async def test_cancel_puts_the_seats_back_on_sale(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Cancelling a pending order frees its seats at once; a cancelled order cannot be paid."""
    (alice,) = await quick_users(rt, 1)
    made = await pending_order(client, alice, screening, ["C5", "C6"])
    assert (await seat_states(rt, screening)) == {"C5": "held", "C6": "held"}
    r = await client.post(f"/api/orders/{made['id']}/cancel", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await seat_states(rt, screening) == {}
    r = await client.post(f"/api/orders/{made['id']}/payments", headers=alice.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "order_closed")
    r = await client.post(f"/api/orders/{made['id']}/cancel", headers=alice.headers)
    assert (r.status_code, r.json()["error"]["status"]) == (409, "cancelled")


async def test_order_expires_with_its_hold(rt: Runtime, settings: Settings) -> None:
    """With a 1 s payment window the order reads expired after it, cannot be paid, and the
    worker (here inside the web process, as in dev mode) writes the state down."""
    screening = await make_screening(rt, ["SSSS"])
    (alice,) = await quick_users(rt, 1)
    from dataclasses import replace

    from seatmap.app import create_app

    async with (
        running(create_app(replace(settings, payment_window=1, inline_worker=True))) as srv,
        httpx.AsyncClient(base_url=srv.http) as client,
    ):
        made = await pending_order(client, alice, screening, ["A1", "A2"])
        await asyncio.sleep(1.1)
        assert (await get_order(client, alice, made["id"]))["status"] == "expired"
        r = await client.post(f"/api/orders/{made['id']}/payments", headers=alice.headers)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "order_closed")
        async with asyncio.timeout(3 * TIMEOUT_FACTOR):
            while True:
                async with rt.pool.acquire() as conn:
                    if (
                        await conn.fetchval("SELECT status FROM orders WHERE id = $1", made["id"])
                        == "expired"
                    ):
                        break
                await asyncio.sleep(0.1)


async def test_sweeper_shows_sold_a_paid_order_a_crash_left_unpublished(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """Paid in PostgreSQL but the process died before Redis heard of it: the next sweep of any
    process marks the seats sold, and viewers get the change."""
    (alice,) = await quick_users(rt, 1)
    made = await pending_order(client, alice, screening, ["B1", "B2"])
    payment = await start_payment(client, alice, made["id"])
    assert server.runtime is not None
    await commit_without_publishing(server.runtime, made, payment)
    viewer = await Viewer.connect(server, screening)
    snap = await viewer.next("snapshot")
    assert snap["seats"] == {"B1": "held", "B2": "held"}
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "UPDATE orders SET paid_at = now() - interval '1 minute' WHERE id = $1", made["id"]
        )
    assert await sweep_once(server.runtime) == 1
    delta = await viewer.next("delta")
    assert sorted((c["seat"], c["state"]) for c in delta["changes"]) == [("B1", "sold"), ("B2", "sold")]
    assert await sweep_once(server.runtime) == 0
    await viewer.close()


async def commit_without_publishing(srv_rt: Runtime, made: dict[str, Any], payment: dict[str, Any]) -> None:
    """The confirmation transaction alone, as if the process died right after its COMMIT."""
    from seatmap.sales.gateway import PaymentData, WebhookEvent
    from seatmap.sales.payments import _apply

    async with srv_rt.pool.acquire() as conn:
        ref = await conn.fetchval("SELECT provider_ref FROM payments WHERE id = $1", payment["id"])
    event = WebhookEvent(
        id="evt_crash",
        type="payment.paid",
        created=0,
        data=PaymentData(payment_id=ref, reference=str(made["id"]), amount=made["total"], currency="IDR"),
    )
    receipt, sold = await _apply(srv_rt, "simulated", event, made["id"], tickets=True)
    assert receipt.outcome == "paid" and sold is not None


async def test_paid_order_shows_tickets(rt: Runtime, client: httpx.AsyncClient, screening: int) -> None:
    """A paid order lists one ticket per line with its QR link, and `paid_at`."""
    (alice,) = await quick_users(rt, 1)
    paid = await buy(client, alice, screening, ["D3", "D4"], holder_names=["Ani"])
    assert paid["paid_at"] is not None
    assert [(t["seat"], t.get("holder_name"), t["status"]) for t in paid["tickets"]] == [
        ("D3", "Ani", "valid"),
        ("D4", None, "valid"),
    ]
    assert all(t["qr_url"] == f"/api/tickets/{t['code']}/qr.svg" for t in paid["tickets"])
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {LIVE_ORDER_COLUMNS} FROM orders o WHERE o.id = $1", paid["id"])
    assert LiveOrder.of(row).seats == ["D3", "D4"]


async def test_token_of_a_deleted_account_cannot_order(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """A customer whose account was deleted after holding seats gets 401 `invalid_token` for the
    order (never a 500), no order is written, and viewers see the seats free again at once."""
    (alice,) = await quick_users(rt, 1)
    held = await hold(client, alice, screening, ["B3", "B4"])
    viewer = await Viewer.connect(server, screening)
    assert (await viewer.next("snapshot"))["seats"] == {"B3": "held", "B4": "held"}
    async with rt.pool.acquire() as conn:
        await conn.execute("DELETE FROM users WHERE id = $1", alice.id)
    r = await order(client, alice, held["token"])
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_token"), r.text
    assert "no longer exists" in r.json()["error"]["message"]
    freed: dict[str, str] = {}
    while len(freed) < 2:
        for change in (await viewer.next("delta"))["changes"]:
            freed[change["seat"]] = change["state"]
    await viewer.close()
    assert freed == {"B3": "free", "B4": "free"}
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == 0
