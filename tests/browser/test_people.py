"""Tickets for people and the money desk in a real browser: availability in the listing, holder
names at the web checkout and the kiosk, the refund button and the notifications view, the
admin's refunds (payout confirmed with a till reference) and the gateway's given-up webhooks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import httpx
from playwright.async_api import Page, expect

from seatmap import jobs
from seatmap.runtime import Runtime
from seatmap.sales import notifications, refunds
from tests.browser.pages import Browsers, log_in_here, open_screening, seat
from tests.refunding import cancel_screening, paid_orders
from tests.shopping import buy
from tests.support import Server, User, create_user, login, make_screening

SHOTS: Final = Path("/tmp/shots")
SIZES: Final = ((1440, 900), (390, 844))


async def shots(page: Page, name: str) -> None:
    """The page at desktop and phone sizes, to look at (not compared)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in SIZES:
        await page.set_viewport_size({"width": width, "height": height})
        await page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    await page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})


async def _deliver_notifications(rt: Runtime, server: Server) -> None:
    """The `notify` jobs, run by the worker's handler (the test server runs no worker)."""
    assert server.runtime is not None
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, payload FROM jobs WHERE kind = 'notify' AND status = 'queued'")
        await conn.execute("DELETE FROM jobs WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
    for r in rows:
        await notifications.deliver(
            server.runtime, jobs.Job(r["id"], "notify", r["payload"], 1, 3, datetime.now(UTC))
        )


async def _names_required(client: httpx.AsyncClient, admin: User, screening: int) -> None:
    r = await client.patch(
        f"/api/admin/screenings/{screening}", json={"holder_names_required": True}, headers=admin.headers
    )
    assert r.status_code == 200, r.text


async def test_customer_names_the_tickets_refunds_and_reads_the_notifications(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The listing says few left; checkout refuses a missing name, then pays with two names;
    the order shows them with a refund button and its deadline; refunding works; the
    notifications view lists the booking and the refund."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    admin = await login(client, await create_user(rt, "admin"))
    await _names_required(client, admin, screening)
    await paid_orders(rt, screening, 7)  # 7 of 10 sold: two more held makes 90% taken
    buyer = await create_user(rt, "customer")
    page = await browsers.page(server.http, width=1440, height=900)
    day = (await client.get(f"/api/screenings/{screening}")).json()["starts_at"][:10]
    await page.goto(f"/#/?date={day}")
    showtime = page.locator(f'a.time[data-screening="{screening}"]')
    await expect(showtime).to_be_visible()
    await expect(showtime.locator(".avail")).to_have_count(0)

    await open_screening(page, screening)
    await seat(page, "A8").click()
    await log_in_here(page, buyer)
    await expect(seat(page, "A8")).to_have_attribute("data-state", "mine")
    await seat(page, "A9").click()
    await expect(seat(page, "A9")).to_have_attribute("data-state", "mine")
    names = page.locator("#holder-names input")
    await expect(names).to_have_count(2)
    await names.nth(0).fill("Ani Wijaya")
    await page.locator("#checkout").click()
    await expect(page.locator(".side-column .notice")).to_contain_text("enter one for Seat A9")
    await expect(names.nth(1)).to_be_focused()
    await shots(page, "people-checkout-names")
    await names.nth(1).fill("Budi Santoso")
    await page.locator("#checkout").click()
    await page.wait_for_url("**/pay/**")
    await page.get_by_role("button", name="Approve").click()
    await page.get_by_role("link", name="Back to the shop").click()
    await expect(page.locator(".order-status")).to_contain_text("Paid")
    tickets = page.locator(".ticket")
    await expect(tickets).to_have_count(2)
    await expect(tickets.nth(0)).to_contain_text("Ani Wijaya")
    await expect(tickets.nth(1)).to_contain_text("Budi Santoso")
    await expect(page.locator("#refund-deadline")).to_contain_text("You can refund until")
    await shots(page, "people-order-refundable")
    await _deliver_notifications(rt, server)  # the booking mail, as the worker sends it

    await page.goto(f"/#/?date={day}")
    await expect(showtime.locator(".avail")).to_have_text("Few left")
    await shots(page, "people-listing-few-left")

    await page.go_back()
    await page.locator("#refund").click()
    await page.locator("#confirm-ok").click()
    await expect(page.locator(".order-status")).to_contain_text("Refunded")
    await expect(page.locator("#refund-box")).to_have_count(0)

    async with rt.pool.acquire() as conn:  # the refund itself, as the worker would
        refund_id = await conn.fetchval("SELECT id FROM refunds")
    assert server.runtime is not None
    await refunds.run_refund(
        server.runtime, jobs.Job(1, refunds.JOB, {"refund_id": refund_id}, 1, 3, datetime.now(UTC))
    )
    await _deliver_notifications(rt, server)
    await page.get_by_role("link", name="Notifications").click()
    items = page.locator(".notification")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_have_attribute("data-kind", "refund_done")
    await expect(items.nth(1)).to_have_attribute("data-kind", "booking_confirmed")
    await expect(items.nth(1)).to_contain_text("Seat A8 (Ani Wijaya): code")
    await shots(page, "people-notifications")


async def test_kiosk_asks_a_name_per_ticket_for_an_event_that_prints_them(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """At the counter the cart asks a name for each selected seat; Cash without them is refused
    with a word; with them the tickets carry the names; the picker says sold out at the end."""
    screening = await make_screening(rt, ["S" * 4])
    admin = await login(client, await create_user(rt, "admin"))
    await _names_required(client, admin, screening)
    staff = await create_user(rt, "staff")
    kiosk = await browsers.page(server.http, width=1440, height=900)
    await kiosk.goto("/kiosk.html")
    await log_in_here(kiosk, staff)
    for label in ("A1", "A2", "A3", "A4"):
        await seat(kiosk, label).click()
        await expect(seat(kiosk, label)).to_have_attribute("data-state", "selected")
    names = kiosk.locator("#holder-names input")
    await expect(names).to_have_count(4)
    await names.nth(0).fill("Sari")
    await kiosk.locator("#pay-cash").click()
    await expect(kiosk.get_by_role("alert")).to_contain_text("enter one for Seat A2")
    for i, name in enumerate(("Tono", "Wati", "Yusuf"), start=1):
        await names.nth(i).fill(name)
    await shots(kiosk, "people-kiosk-names")
    await kiosk.locator("#pay-cash").click()
    cards = kiosk.locator(".ticket")
    await expect(cards).to_have_count(4)
    for i, (label, name) in enumerate((("A1", "Sari"), ("A2", "Tono"), ("A3", "Wati"), ("A4", "Yusuf"))):
        await expect(cards.nth(i)).to_contain_text(f"Seat {label}")
        await expect(cards.nth(i)).to_contain_text(name)
    await kiosk.reload()
    await expect(kiosk.locator("#sale-screening option").first).to_contain_text("(sold out)")


async def test_admin_confirms_a_cash_payout_and_sees_given_up_webhooks(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The refunds page names order, customer and screening; a cash refund is owed until the
    admin confirms the payout with a till reference; the gateway page lists a given-up webhook
    and sends it again."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    staff = await login(client, await create_user(rt, "staff"))
    r = await client.post(
        "/api/boxoffice/sales",
        json={"screening_id": screening, "seats": ["A2"], "payment_method": "cash"},
        headers=staff.headers,
    )
    assert r.status_code == 201, r.text
    buyer = await login(client, await create_user(rt, "customer"))
    await buy(client, buyer, screening, ["A5"])
    await cancel_screening(client, rt, screening)
    assert server.runtime is not None
    async with rt.pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM refunds ORDER BY id")]
    for refund_id in ids:
        await refunds.run_refund(
            server.runtime, jobs.Job(1, refunds.JOB, {"refund_id": refund_id}, 1, 3, datetime.now(UTC))
        )
    async with rt.pool.acquire() as conn:
        hook = await conn.fetchval(
            "UPDATE simulated_webhooks SET delivered_at = NULL, due_at = 'infinity', attempts = 12,"
            " last_status = 503 WHERE id = (SELECT min(id) FROM simulated_webhooks) RETURNING id"
        )

    admin = await create_user(rt, "admin")
    page = await browsers.page(server.http, width=1440, height=900)
    await page.goto("/admin.html#refunds")
    await log_in_here(page, admin)
    rows = page.locator("#refunds-table tbody tr")
    await expect(rows).to_have_count(2)
    web, cash = rows.nth(0), rows.nth(1)
    await expect(web).to_contain_text(buyer.email)
    await expect(web).to_contain_text("Test film")
    await expect(web).to_contain_text("succeeded")
    await expect(cash).to_contain_text("at the counter")
    await expect(cash).to_contain_text("owed at counter")
    await shots(page, "people-admin-refunds")
    await cash.get_by_role("button", name="Confirm payout").click()
    await page.locator("#confirm-field").fill("Till 1 / 0815")
    await page.locator("#confirm-ok").click()
    await expect(page.get_by_role("alert")).to_contain_text("paid out (Till 1 / 0815)")
    await expect(cash).to_contain_text("paid out")
    await expect(cash).to_contain_text("till Till 1 / 0815")

    await page.get_by_role("tab", name="Gateway webhooks").click()
    row = page.locator(f'#given-up-table tr[data-webhook="{hook}"]')
    await expect(row).to_contain_text("payment.paid")
    await expect(row).to_contain_text("HTTP 503")
    await shots(page, "people-admin-given-up")
    await row.get_by_role("button", name="Send again").click()
    await expect(page.get_by_role("alert")).to_contain_text("being sent again")


async def test_staff_pay_out_a_cash_refund_at_the_kiosk(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The kiosk's Refunds mode lists what is owed at the counter; staff confirm the payout with
    the till's reference and it leaves the list."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    staff = await create_user(rt, "staff")
    seller = await login(client, staff)
    r = await client.post(
        "/api/boxoffice/sales",
        json={"screening_id": screening, "seats": ["A3"], "payment_method": "cash"},
        headers=seller.headers,
    )
    assert r.status_code == 201, r.text
    await cancel_screening(client, rt, screening)
    assert server.runtime is not None
    async with rt.pool.acquire() as conn:
        refund_id = await conn.fetchval("SELECT id FROM refunds")
    await refunds.run_refund(
        server.runtime, jobs.Job(1, refunds.JOB, {"refund_id": refund_id}, 1, 3, datetime.now(UTC))
    )
    kiosk = await browsers.page(server.http, width=1440, height=900)
    await kiosk.goto("/kiosk.html#refunds")
    await log_in_here(kiosk, staff)
    row = kiosk.locator(f'#refunds-table tr[data-refund="{refund_id}"]')
    await expect(row).to_contain_text("owed at counter")
    await shots(kiosk, "people-kiosk-refunds")
    await row.get_by_role("button", name="Confirm payout").click()
    await kiosk.locator("#confirm-field").fill("Drawer 3 #118")
    await kiosk.locator("#confirm-ok").click()
    await expect(kiosk.get_by_role("alert")).to_contain_text("paid out (Drawer 3 #118)")
    await expect(kiosk.locator("#refunds-table")).to_have_count(0)
    async with rt.pool.acquire() as conn:
        confirmed = await conn.fetchrow(
            "SELECT till_reference, confirmed_by FROM refunds WHERE id = $1", refund_id
        )
    assert confirmed is not None and (confirmed["till_reference"], confirmed["confirmed_by"]) == (
        "Drawer 3 #118",
        staff.id,
    )
