"""The admin console in a real browser: scheduling, seat blocks, the layout editor, cancellation."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import expect

from seatmap.runtime import Runtime
from tests.browser.pages import Browsers, log_in_here, open_screening, screenshot, seat
from tests.refunding import paid_orders
from tests.support import Server, create_user, make_screening

JAKARTA = ZoneInfo("Asia/Jakarta")
CANCEL = "/api/admin/screenings/{id}/cancel"


async def _cancel_available(client: httpx.AsyncClient) -> bool:
    spec = (await client.get("/openapi.json")).json()
    return "post" in spec["paths"].get(CANCEL, {})


async def test_admin_schedules_a_screening_and_blocks_a_seat_from_the_ui(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The admin creates a screening with the form, sees its live map, blocks C5; a customer sees it."""
    await make_screening(rt, ["S" * 10] * 5)  # a cinema with a hall and a film
    # A browser whose day is not Jakarta's now (19 h behind it, or 7 h ahead late in its day):
    # the list still opens on the cinema's today.
    here = datetime.now(JAKARTA)
    browser_zone = "Etc/GMT+12" if here.hour < 19 else "Pacific/Kiritimati"
    page = await browsers.page(server.http, width=1440, height=1000, timezone_id=browser_zone)
    await page.goto("/admin.html")
    await log_in_here(page, await create_user(rt, "admin"))
    await expect(page.locator("#adm-date")).to_have_value(here.date().isoformat())

    day = (datetime.now(JAKARTA) + timedelta(days=2)).date()
    await page.locator("#new-date").fill(day.isoformat())
    await page.locator("#new-time").fill("20:30")
    await page.locator("#price-standard").fill("65000")
    await page.locator("#create-screening").click()
    await expect(page.locator("#new-screening .notice")).to_contain_text("Created: Test film")
    rows = page.locator("tr[data-screening]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("20:30")
    await expect(page.locator("#screening-detail svg.seatmap .seat")).to_have_count(50)

    async with rt.pool.acquire() as conn:
        created = await conn.fetchrow(
            "SELECT s.id, s.starts_at, s.status, p.amount FROM screenings s"
            " JOIN screening_prices p ON p.screening_id = s.id ORDER BY s.id DESC LIMIT 1"
        )
    assert created is not None
    assert created["starts_at"] == datetime(day.year, day.month, day.day, 20, 30, tzinfo=JAKARTA)
    assert (created["status"], created["amount"]) == ("scheduled", 65000)

    customer = await browsers.page(server.http)
    await open_screening(customer, created["id"])
    await expect(page.locator("#screening-detail .conn")).to_have_class("conn conn-live")
    await seat(page, "C5").click()
    await page.locator("#block-reason").fill("broken armrest")
    await page.locator("#block-seats").click()
    await expect(page.locator("#screening-detail .notice").first).to_contain_text("Blocked C5")
    await expect(seat(customer, "C5")).to_have_attribute("data-state", "blocked")
    await expect(page.locator("#live-counts")).to_contain_text("1 blocked")
    if not await _cancel_available(client):
        await expect(page.locator("#cancel-unavailable")).to_contain_text("not available")
    await screenshot(page, "admin-screenings")

    await page.locator('button[data-tab="refunds"]').click()
    # `.first`: until the tab has rendered, #main still holds the screenings page with its two
    # headings, and a strict locator fails at once on two matches instead of waiting.
    await expect(page.locator("#main h2").first).to_have_text("Refunds")
    await page.locator('button[data-tab="cinemas"]').click()
    rows_box = page.locator("#layout-rows")
    await rows_box.fill("WC_SS_CW\nSSSSSSSS\n\nPPPP_PPPP")
    await expect(page.locator("#layout-preview .seat")).to_have_count(22)
    stats = page.locator("#layout-stats")
    await expect(stats).to_contain_text("22 seats (14 standard, 8 premium), 2 wheelchair")
    await rows_box.fill("SSX")
    problems = page.locator("#hall-editor .notice-error")
    await expect(problems).to_contain_text("unknown seat character 'X' at column 3")
    await rows_box.fill("SSSS_SSSS\nPPPP_PPPP")
    await page.locator("#hall-name").fill("Studio 9")
    await page.locator("#save-hall").click()
    await expect(page.locator("#hall-editor .notice-ok")).to_have_text("Saved Studio 9: 16 seats.")
    await expect(page.locator("#hall-editor h2")).to_have_text("Edit Studio 9")
    await screenshot(page, "admin-layout-editor")


async def test_cancelling_a_screening_shows_it_cancelled_to_its_viewers(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The admin cancels a screening after confirming; a viewer sees it cancelled; refunds are listed."""
    assert await _cancel_available(client)
    screening = await make_screening(rt, ["S" * 10] * 5)
    paid = await paid_orders(rt, screening, 2)
    async with rt.pool.acquire() as conn:
        starts = await conn.fetchval("SELECT starts_at FROM screenings WHERE id = $1", screening)
        cinema = await conn.fetchval(
            "SELECT a.cinema_id FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE s.id = $1",
            screening,
        )
    customer = await browsers.page(server.http)
    await open_screening(customer, screening)
    admin = await browsers.page(server.http, width=1440, height=1000)
    day = starts.astimezone(JAKARTA).date().isoformat()
    await admin.goto(f"/admin.html#screenings?cinema={cinema}&date={day}&screening={screening}")
    await log_in_here(admin, await create_user(rt, "admin"))
    await admin.locator("#cancel-screening").click()
    await admin.locator("#confirm-field").fill("The projector is broken.")
    await admin.locator("#confirm-ok").click()
    await expect(customer.locator(".banner")).to_contain_text("cancelled")
    await expect(customer.locator(".screening")).to_have_attribute("data-status", "cancelled")
    await screenshot(customer, "customer-cancelled")
    await expect(admin.locator("#screening-detail .notice-ok")).to_contain_text(
        "Cancelled. 2 refunds queued, 0 orders cancelled, 0 holds released."
    )
    # The refunds it queued are on the admin's refunds page, waiting for the worker.
    await admin.locator('button[data-tab="refunds"]').click()
    rows = admin.locator("#main tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text(str(paid[1].id))
    await expect(rows.first).to_contain_text("pending")
