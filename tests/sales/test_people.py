"""Tickets for people and the money desk: holder names, the booking mail's tickets, manual
refunds confirmed at the till, refunds named by order and customer, given-up webhooks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from seatmap import jobs
from seatmap.catalog.screenings import screening_detail
from seatmap.runtime import Runtime
from seatmap.sales import refunds
from tests.refunding import cancel_screening, eventually
from tests.shopping import buy, hold, order
from tests.support import Server, User, logged_in, make_screening, quick_users


async def _names_required(client: httpx.AsyncClient, admin: User, screening: int) -> None:
    r = await client.patch(
        f"/api/admin/screenings/{screening}", json={"holder_names_required": True}, headers=admin.headers
    )
    assert r.status_code == 200 and r.json()["holder_names_required"] is True, r.text


async def test_an_event_that_names_its_holders_refuses_a_sale_without_a_name_per_ticket(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """Web checkout and the counter both answer 422 at `$.holder_names` until every ticket has a
    name; the detail says names are required; the tickets carry the names."""
    screening = await make_screening(rt, ["SSSSSSSS"], strand_rule=False)
    (admin,) = await quick_users(rt, 1, "admin")
    (buyer,) = await quick_users(rt, 1)
    (staff,) = await quick_users(rt, 1, "staff")
    detail = (await client.get(f"/api/screenings/{screening}")).json()
    assert detail["holder_names"] == "none" and detail["holder_names_required"] is False
    await _names_required(client, admin, screening)
    assert (await client.get(f"/api/screenings/{screening}")).json()["holder_names"] == "required"

    held = await hold(client, buyer, screening, ["A1", "A2"])
    for names in ([], ["Ani"], ["Ani", "  "]):
        r = await order(client, buyer, held["token"], holder_names=names)
        assert r.status_code == 422 and r.json()["error"]["path"] == "$.holder_names", (names, r.text)
    r = await order(client, buyer, held["token"], holder_names=["Ani", " Budi Santoso "])
    assert r.status_code == 201, r.text
    assert [line["holder_name"] for line in r.json()["lines"]] == ["Ani", "Budi Santoso"]

    sale: dict[str, Any] = {"screening_id": screening, "seats": ["A5", "A6"], "payment_method": "cash"}
    r = await client.post(
        "/api/boxoffice/sales", json={**sale, "holder_names": ["Sari"]}, headers=staff.headers
    )
    assert r.status_code == 422 and r.json()["error"]["path"] == "$.holder_names", r.text
    r = await client.post(
        "/api/boxoffice/sales", json={**sale, "holder_names": ["Sari", "Tono"]}, headers=staff.headers
    )
    assert r.status_code == 201, r.text
    assert [t["holder_name"] for t in r.json()["tickets"]] == ["Sari", "Tono"]


async def test_holder_names_refuse_control_characters_and_overlong_names(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """A newline, a tab, an escape or 101 characters in a name is 422 naming the ticket; 100 is fine."""
    screening = await make_screening(rt, ["SSSSSSSS"], strand_rule=False)
    (buyer,) = await quick_users(rt, 1)
    held = await hold(client, buyer, screening, ["A1"])
    for bad in ("Ani\nBudi", "Ani\tB", "Ani\x1b[31m", "Ani\x85", "x" * 101):
        r = await order(client, buyer, held["token"], holder_names=[bad])
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["path"] == "$.holder_names[0]", r.text
    r = await order(client, buyer, held["token"], holder_names=["Zoë Ñandú 王" + "x" * 89])
    assert r.status_code == 201, r.text


async def test_the_setting_asks_for_names_everywhere_but_requires_none(rt: Runtime) -> None:
    """With SEATMAP_ASK_HOLDER_NAMES the detail says names are optional (required still wins)."""
    screening = await make_screening(rt, ["SSSS"], strand_rule=False)
    asking = replace(rt, settings=replace(rt.settings, ask_holder_names=True))
    assert (await screening_detail(asking, screening)).holder_names == "optional"
    assert (await screening_detail(rt, screening)).holder_names == "none"
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE screenings SET holder_names_required = true WHERE id = $1", screening)
    assert (await screening_detail(asking, screening)).holder_names == "required"


async def test_the_booking_mail_lists_each_tickets_seat_holder_code_and_qr_link(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """The confirmation mail names each ticket: seat, holder, code and the absolute link of its
    QR code (which serves the image), then the order's page."""
    screening = await make_screening(rt, ["SSSSSSSS"], strand_rule=False)
    buyer = await logged_in(rt, client)
    paid = await buy(client, buyer, screening, ["A3", "A4"], holder_names=["Ani"])
    assert server.runtime is not None
    async with rt.pool.acquire() as conn:
        job = await conn.fetchrow("SELECT id, payload FROM jobs WHERE kind = 'notify'")
    assert job is not None
    from seatmap.sales import notifications

    await notifications.deliver(
        server.runtime, jobs.Job(job["id"], "notify", job["payload"], 1, 3, datetime.now(UTC))
    )
    async with rt.pool.acquire() as conn:
        body = await conn.fetchval("SELECT body FROM mail_outbox WHERE subject LIKE 'Your tickets%'")
    a3, a4 = paid["tickets"]
    base = server.http
    assert f"- Seat A3 (Ani): code {a3['code']}, QR code {base}/api/tickets/{a3['code']}/qr.svg" in body
    assert f"- Seat A4: code {a4['code']}, QR code {base}/api/tickets/{a4['code']}/qr.svg" in body
    assert f"Your order: {base}/#/order/{paid['id']}" in body
    qr = await client.get(f"/api/tickets/{a3['code']}/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")


async def _manual_refund(
    rt: Runtime, server: Server, client: httpx.AsyncClient, staff: User
) -> dict[str, Any]:
    """A cash sale of a screening then cancelled: its refund is owed at the counter."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    r = await client.post(
        "/api/boxoffice/sales",
        json={"screening_id": screening, "seats": ["A2"], "payment_method": "cash"},
        headers=staff.headers,
    )
    assert r.status_code == 201, r.text
    sale: dict[str, Any] = r.json()
    await cancel_screening(client, rt, screening)
    async with rt.pool.acquire() as conn:
        refund_id = await conn.fetchval("SELECT id FROM refunds WHERE order_id = $1", sale["id"])
    assert server.runtime is not None
    job = jobs.Job(1, refunds.JOB, {"refund_id": refund_id}, 1, 3, datetime.now(UTC))
    await refunds.run_refund(server.runtime, job)
    sale["refund_id"] = refund_id
    return sale


async def test_staff_confirm_a_cash_refund_with_the_till_reference_once(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """A manual refund is owed until staff confirm it with a till reference: then `paid_out`
    with who and when; a second confirmation, a reused reference or a gateway refund is 409."""
    (staff,) = await quick_users(rt, 1, "staff")
    (customer,) = await quick_users(rt, 1)
    first = await _manual_refund(rt, server, client, staff)
    second = await _manual_refund(rt, server, client, staff)
    owed = (await client.get("/api/admin/refunds?status=manual", headers=staff.headers)).json()["items"]
    assert {item["id"] for item in owed} == {first["refund_id"], second["refund_id"]}
    url = f"/api/admin/refunds/{first['refund_id']}/confirm"
    assert (
        await client.post(url, json={"till_reference": "T-1"}, headers=customer.headers)
    ).status_code == 403
    r = await client.post(url, json={"till_reference": "Till 2 / 0042"}, headers=staff.headers)
    assert r.status_code == 200, r.text
    item = r.json()
    assert (item["status"], item["till_reference"], item["confirmed_by"]) == (
        "paid_out",
        "Till 2 / 0042",
        staff.id,
    )
    assert item["confirmed_at"]
    again = await client.post(url, json={"till_reference": "Till 2 / 0043"}, headers=staff.headers)
    assert again.status_code == 409 and again.json()["error"]["status"] == "paid_out", again.text
    reused = await client.post(
        f"/api/admin/refunds/{second['refund_id']}/confirm", json={"till_reference": "Till 2 / 0042"},
        headers=staff.headers,
    )  # fmt: skip
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "reference_used", reused.text
    for bad in ({}, {"till_reference": ""}, {"till_reference": "a\nb"}, {"till_reference": "x", "more": 1}):
        r = await client.post(
            f"/api/admin/refunds/{second['refund_id']}/confirm", json=bad, headers=staff.headers
        )
        assert r.status_code in (400, 422), (bad, r.text)
    missing = await client.post(
        "/api/admin/refunds/999999/confirm", json={"till_reference": "Z"}, headers=staff.headers
    )
    assert missing.status_code == 404
    owed = (await client.get("/api/admin/refunds?status=manual", headers=staff.headers)).json()["items"]
    assert [item["id"] for item in owed] == [second["refund_id"]]
    done = (await client.get("/api/admin/refunds?status=paid_out", headers=staff.headers)).json()["items"]
    assert [item["id"] for item in done] == [first["refund_id"]]


async def test_the_refunds_page_names_order_customer_screening_and_amount(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """A web order's refund carries its customer and screening; a counter sale's has no customer."""
    (staff,) = await quick_users(rt, 1, "staff")
    admin = await logged_in(rt, client, "admin")
    counter = await _manual_refund(rt, server, client, staff)
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    paid = await buy(client, buyer, screening, ["A1"])
    r = await client.post(f"/api/orders/{paid['id']}/refund", headers=buyer.headers)
    assert r.status_code == 202, r.text
    web, cash = (await client.get("/api/admin/refunds", headers=admin.headers)).json()["items"]
    assert (web["order_id"], web["customer_email"], web["customer_id"]) == (paid["id"], buyer.email, buyer.id)
    assert (web["screening_id"], web["movie_title"], web["amount"], web["channel"]) == (
        screening, "Test film", paid["total"], "web",
    )  # fmt: skip
    assert web["starts_at"]
    assert cash["order_id"] == counter["id"] and cash["channel"] == "boxoffice"
    assert "customer_email" not in cash and cash["status"] == "manual"


async def test_webhooks_the_gateway_gave_up_on_are_listed_and_can_be_sent_again(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """A webhook left undelivered after the gateway's last attempt is listed for admins with its
    event, order and last answer; sent again, the gateway delivers it and the list is empty."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    admin = await logged_in(rt, client, "admin")
    paid = await buy(client, buyer, screening, ["A1"])

    async def all_delivered() -> bool:
        async with rt.pool.acquire() as conn:
            return not await conn.fetchval(
                "SELECT count(*) FROM simulated_webhooks WHERE delivered_at IS NULL"
            )

    await eventually(all_delivered)
    # Giving up takes the gateway 12 attempts over hours: its end state, written directly.
    async with rt.pool.acquire() as conn:
        hook = await conn.fetchval(
            "UPDATE simulated_webhooks SET delivered_at = NULL, due_at = 'infinity', attempts = 12,"
            " last_status = 503 WHERE id = (SELECT min(id) FROM simulated_webhooks) RETURNING id"
        )
    r = await client.get("/api/admin/gateway/webhooks/given-up", headers=buyer.headers)
    assert r.status_code == 403
    (item,) = (await client.get("/api/admin/gateway/webhooks/given-up", headers=admin.headers)).json()[
        "items"
    ]
    assert (item["id"], item["type"], item["reference"], item["attempts"], item["last_status"]) == (
        hook, "payment.paid", str(paid["id"]), 12, 503,
    )  # fmt: skip
    again = await client.post(f"/api/admin/gateway/webhooks/{hook}/send-again", headers=admin.headers)
    assert again.status_code == 204, again.text

    async def delivered() -> bool:
        async with rt.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT delivered_at IS NOT NULL FROM simulated_webhooks WHERE id = $1", hook
                )
            )

    await eventually(delivered)
    assert (await client.get("/api/admin/gateway/webhooks/given-up", headers=admin.headers)).json()[
        "items"
    ] == []
    r = await client.post(f"/api/admin/gateway/webhooks/{hook}/send-again", headers=admin.headers)
    assert r.status_code == 409
    r = await client.post("/api/admin/gateway/webhooks/999999/send-again", headers=admin.headers)
    assert r.status_code == 404
