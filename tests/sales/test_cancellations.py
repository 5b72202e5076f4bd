"""Cancelling a screening: one transaction, viewers told at once, holds released and refused."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from seatmap import jobs
from seatmap.runtime import Runtime
from seatmap.sales import cancellations
from tests.refunding import count, paid_orders
from tests.shopping import hold, pending_order, seat_states
from tests.support import Server, Viewer, logged_in, make_screening


async def test_cancel_answers_202_with_counts_and_tells_viewers(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Paid orders get refunds queued, pending ones are cancelled, holds go, viewers see `cancelled`."""
    screening = await make_screening(rt, ["S" * 10] * 3, strand_rule=False)
    paid = await paid_orders(rt, screening, 5)
    buyer = await logged_in(rt, client)
    pending = await pending_order(client, buyer, screening, ["C1"])
    browser = await logged_in(rt, client)
    held = await hold(client, browser, screening, ["C5", "C6"])
    viewer = await Viewer.connect(server, screening)
    snapshot = await viewer.next("snapshot")
    assert snapshot["seats"]["C5"] == "held" and snapshot["seats"][paid[0].seat] == "sold"

    admin = await logged_in(rt, client, "admin")
    r = await client.post(
        f"/api/admin/screenings/{screening}/cancel",
        json={"reason": "Projector broken"},
        headers=admin.headers,
    )
    assert r.status_code == 202, r.text
    assert r.json() == {
        "status": "cancelled",
        "refunds_queued": 5,
        "orders_cancelled": 1,
        "holds_released": 2,
    }

    assert (await viewer.next("status"))["status"] == "cancelled"
    freed = await viewer.next("delta")
    assert {c["seat"]: c["state"] for c in freed["changes"]} == {"C1": "free", "C5": "free", "C6": "free"}
    states = await seat_states(rt, screening)
    assert "C5" not in states and states[paid[0].seat] == "sold"  # sold until refunded

    # Holds are refused from now on, over REST and over the socket.
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["A9"]}, headers=browser.headers
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_on_sale", r.text
    r = await client.get(f"/api/holds/{held['token']}", headers=browser.headers)
    assert r.status_code == 404

    async with rt.pool.acquire() as conn:
        orders = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM orders")}
        refunds = await conn.fetch("SELECT order_id, amount, status, reason FROM refunds ORDER BY order_id")
        queued = await conn.fetch("SELECT kind, dedupe_key FROM jobs ORDER BY id")
        shown = await conn.fetchrow("SELECT status, cancel_reason FROM screenings WHERE id = $1", screening)
    assert orders[pending["id"]] == "cancelled"
    assert all(orders[p.id] == "refund_pending" for p in paid)
    assert [(r["order_id"], r["amount"], r["status"]) for r in refunds] == [
        (p.id, p.price, "pending") for p in paid
    ]
    assert {r["reason"] for r in refunds} == {"screening_cancelled"}
    kinds = [q["kind"] for q in queued]
    assert (
        kinds.count("refund") == 5 and kinds.count("notify") == 6 and kinds.count("screening_cancelled") == 1
    )
    assert shown is not None and tuple(shown) == ("cancelled", "Projector broken")
    await viewer.close()


async def test_cancelling_twice_or_a_missing_screening_changes_nothing(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A second cancel is 409, an unknown screening 404, a missing reason 422, a customer 403."""
    screening = await make_screening(rt, ["S" * 5])
    admin = await logged_in(rt, client, "admin")
    customer = await logged_in(rt, client)
    url = f"/api/admin/screenings/{screening}/cancel"
    r = await client.post(url, json={"reason": "x"}, headers=customer.headers)
    assert r.status_code == 403
    r = await client.post(url, json={}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["error"]["path"] == "$.reason"
    r = await client.post(url, json={"reason": ""}, headers=admin.headers)
    assert r.status_code == 422
    assert await count(rt, "SELECT count(*) FROM screenings WHERE status = 'cancelled'") == 0
    r = await client.post(url, json={"reason": "storm"}, headers=admin.headers)
    assert r.status_code == 202
    r = await client.post(url, json={"reason": "storm"}, headers=admin.headers)
    assert r.status_code == 409 and r.json()["error"]["status"] == "cancelled"
    r = await client.post("/api/admin/screenings/999999/cancel", json={"reason": "x"}, headers=admin.headers)
    assert r.status_code == 404
    assert await count(rt, "SELECT count(*) FROM jobs WHERE kind = 'screening_cancelled'") == 1


async def test_the_live_half_is_redone_by_its_job_after_a_crash(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """If the process died after the commit, the job tells viewers and releases holds (once)."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    await hold(client, buyer, screening, ["A2", "A3"])
    viewer = await Viewer.connect(server, screening)
    await viewer.next("snapshot")
    # The committed half only, as if the web process died before touching Redis.
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE screenings SET status = 'cancelled' WHERE id = $1", screening)
    assert server.runtime is not None
    job = jobs.Job(1, cancellations.JOB, {"screening_id": screening}, 1, 3, datetime.now(UTC))
    await cancellations.run_live_cancel(server.runtime, job)
    assert (await viewer.next("status"))["status"] == "cancelled"
    assert {c["seat"] for c in (await viewer.next("delta"))["changes"]} == {"A2", "A3"}
    await cancellations.run_live_cancel(server.runtime, job)  # again: nothing more to say
    with pytest.raises(TimeoutError):
        await viewer.next("delta", within=0.3)
    await viewer.close()
