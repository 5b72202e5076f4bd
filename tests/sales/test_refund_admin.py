"""The admin's view of refunds: dead ones with their last error, retried; paged and filtered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from seatmap.runtime import Runtime
from tests.refunding import (
    assert_each_refunded_exactly_once,
    cancel_screening,
    eventually,
    paid_orders,
    refunded_at_least,
    worker,
)
from tests.support import Server, logged_in, make_screening


async def test_an_always_failing_refund_ends_dead_visible_to_the_admin_who_retries_it(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """After N failed attempts the refund is dead with its last error; a retry then succeeds."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    (order,) = await paid_orders(rt, screening, 1)
    await cancel_screening(client, rt, screening)
    admin = await logged_in(rt, client, "admin")
    broken = {"SEATMAP_SIMULATED_REFUND_FAILURE_RATE": "1"}
    async with worker(rt.settings, tmp_path / "broken.log", **broken):
        await eventually(lambda: _dead_refunds(client, admin.headers))
    (dead,) = await _dead_refunds(client, admin.headers)
    # SEATMAP_JOB_MAX_ATTEMPTS of the process that queued it (the web, here the default 10).
    attempts = rt.settings.job_max_attempts
    assert (dead["order_id"], dead["amount"], dead["attempts"]) == (order.id, order.price, attempts)
    assert "gateway" in dead["last_error"]
    r = await client.get("/api/admin/refunds?status=succeeded", headers=admin.headers)
    assert r.json()["items"] == []
    customer = await logged_in(rt, client)
    r = await client.get("/api/admin/refunds", headers=customer.headers)
    assert r.status_code == 403

    r = await client.post(f"/api/admin/refunds/{dead['id']}/retry", headers=admin.headers)
    assert r.status_code == 202, r.text
    r = await client.post(f"/api/admin/refunds/{dead['id']}/retry", headers=admin.headers)
    assert r.status_code == 409  # not dead any more
    async with worker(rt.settings, tmp_path / "fixed.log"):
        await eventually(lambda: refunded_at_least(rt, 1))
    r = await client.get("/api/admin/refunds", headers=admin.headers)
    (item,) = r.json()["items"]
    assert (item["status"], item["order_id"]) == ("succeeded", order.id)
    await assert_each_refunded_exactly_once(rt, [order])


async def _dead_refunds(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get("/api/admin/refunds?status=dead", headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_refunds_are_paged_and_filtered_for_the_admin(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The admin pages through refunds newest first; an unknown status filter is 422."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    paid = await paid_orders(rt, screening, 5)
    await cancel_screening(client, rt, screening)
    admin = await logged_in(rt, client, "admin")
    seen: list[int] = []
    url = "/api/admin/refunds?status=pending&limit=2"
    while True:
        r = await client.get(url, headers=admin.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [item["order_id"] for item in page["items"]]
        if not page.get("next_cursor"):
            break
        url = f"/api/admin/refunds?status=pending&limit=2&cursor={page['next_cursor']}"
    assert seen == [p.id for p in reversed(paid)]
    r = await client.get("/api/admin/refunds?status=lost", headers=admin.headers)
    assert r.status_code == 422
    r = await client.post("/api/admin/refunds/999999/retry", headers=admin.headers)
    assert r.status_code == 404
