"""The staff kiosk in a real browser: box-office sale on the live map, door check-in, offline bar."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from playwright.async_api import expect

from seatmap.runtime import Runtime
from tests.browser.pages import Browsers, log_in_here, open_screening, screenshot, seat
from tests.shopping import buy
from tests.support import Server, create_user, login, make_screening


async def test_kiosk_sells_at_the_counter_and_admits_a_ticket_once(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """Staff sell C5+C6 for cash (a viewer sees them sold); a ticket is admitted once, then refused."""
    screening = await make_screening(rt, ["S" * 12] * 6, starts_in=timedelta(minutes=30))
    buyer = await login(client, await create_user(rt, "customer"))
    code = (await buy(client, buyer, screening, ["F12"]))["tickets"][0]["code"]
    async with rt.pool.acquire() as conn:  # a later show in the same hall: the wrong door for this ticket
        later = await conn.fetchval(
            "INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at, status)"
            " SELECT auditorium_id, movie_id, starts_at + interval '4 hours', ends_at + interval '4 hours',"
            " 'scheduled' FROM screenings WHERE id = $1 RETURNING id",
            screening,
        )
    staff = await create_user(rt, "staff")
    viewer = await browsers.page(server.http)
    await open_screening(viewer, screening)

    kiosk = await browsers.page(server.http, width=1920, height=1080)
    await kiosk.goto("/kiosk.html")
    await log_in_here(kiosk, staff)
    await expect(seat(kiosk, "F12")).to_have_attribute("data-state", "sold")
    # "Suggest seats" selects what best-available would hold now, as the server ranks it.
    answer = await client.get(f"/api/screenings/{screening}/suggestion", params={"count": 3})
    suggested = answer.json()["blocks"][0]
    await kiosk.locator("#kiosk-best-count").select_option("3")
    await kiosk.get_by_role("button", name="Suggest seats").click()
    for label in suggested:
        await expect(seat(kiosk, label)).to_have_attribute("data-state", "selected")
    await expect(kiosk.get_by_role("alert")).to_contain_text("Suggested: ")
    await expect(kiosk.locator("#sale-total")).to_have_text("150,000 IDR")
    await kiosk.get_by_role("button", name="Clear selection").click()
    await expect(seat(kiosk, suggested[0])).to_have_attribute("data-state", "free")
    await seat(kiosk, "C5").click()
    await seat(kiosk, "C6").click()
    await expect(seat(kiosk, "C6")).to_have_attribute("data-state", "selected")
    await expect(kiosk.locator("#sale-total")).to_have_text("100,000 IDR")
    await screenshot(kiosk, "kiosk-sale", full_page=False)
    await kiosk.locator("#pay-cash").click()
    await expect(kiosk.locator(".ticket")).to_have_count(2)
    await expect(seat(viewer, "C5")).to_have_attribute("data-state", "sold")
    await expect(seat(viewer, "C6")).to_have_attribute("data-state", "sold")
    await screenshot(kiosk, "kiosk-sold", full_page=False)

    await kiosk.locator('button[data-mode="door"]').click()
    await kiosk.locator("#door-gate").fill("Door 1")
    await kiosk.locator("#door-gate").press("Tab")
    verdict = kiosk.locator("#verdict")
    code_box = kiosk.locator("#ticket-code")
    await kiosk.locator("#door-screening").select_option(str(later))
    await code_box.fill(code)
    await code_box.press("Enter")
    await expect(verdict).to_have_attribute("data-verdict", "refused")
    await expect(verdict).to_contain_text("Wrong screening.")
    other_show = re.compile(r"This ticket is for Test film, \w{3} \d+ \w{3}, \d\d:\d\d")
    await expect(verdict).to_contain_text(other_show)

    await kiosk.locator("#door-screening").select_option(str(screening))
    await code_box.fill(code)
    await code_box.press("Enter")
    await expect(verdict).to_have_attribute("data-verdict", "admit")
    await expect(verdict).to_contain_text("ADMIT")
    await expect(verdict).to_contain_text("Seat F12")
    await screenshot(kiosk, "kiosk-admit", full_page=False)

    await expect(code_box).to_be_focused()  # ready for the next scan
    await code_box.fill(code)
    await code_box.press("Enter")
    await expect(verdict).to_have_attribute("data-verdict", "refused")
    await expect(verdict).to_contain_text("REFUSED")
    await expect(verdict).to_contain_text(
        re.compile(rf"Already used at \d\d:\d\d by {re.escape(staff.email)} at Door 1\.")
    )
    await screenshot(kiosk, "kiosk-refused", full_page=False)

    await code_box.fill("no-such-ticket-code-000")
    await code_box.press("Enter")
    await expect(verdict).to_contain_text("Unknown ticket code.")


async def test_kiosk_says_plainly_when_it_is_offline(browsers: Browsers, server: Server, rt: Runtime) -> None:
    """The network goes away: a red OFFLINE bar at once; it goes when the network is back."""
    await make_screening(rt, ["S" * 8] * 3, starts_in=timedelta(minutes=30))
    kiosk = await browsers.page(server.http, user=await create_user(rt, "staff"))
    await kiosk.goto("/?kiosk")
    await kiosk.wait_for_url("**/kiosk.html")
    await kiosk.locator('button[data-mode="door"]').click()
    await expect(kiosk.locator("#ticket-code")).to_be_visible()
    offline = kiosk.locator("#offline")
    await expect(offline).to_be_hidden()
    await kiosk.context.set_offline(True)
    await expect(offline).to_be_visible()
    await expect(offline).to_contain_text("OFFLINE")
    await screenshot(kiosk, "kiosk-offline", full_page=False)
    await kiosk.context.set_offline(False)
    await expect(offline).to_be_hidden(timeout=10_000)


async def test_kiosk_sells_on_the_arenas_canvas_map(browsers: Browsers, server: Server, rt: Runtime) -> None:
    """On a 5,000-seat arena the kiosk shows the customer's canvas map (no per-seat buttons):
    staff choose a seat by keyboard, see it selected in the cart and sell it for cash."""
    arena = ["S" * 20 + "_" + "S" * 60 + "_" + "S" * 20] * 50
    screening = await make_screening(rt, arena, starts_in=timedelta(minutes=30), strand_rule=False)
    kiosk = await browsers.page(server.http, width=1920, height=1080)
    await kiosk.goto("/kiosk.html")
    await log_in_here(kiosk, await create_user(rt, "staff"))
    canvas = kiosk.locator("canvas.seatcanvas")
    await expect(canvas).to_be_visible()
    await expect(kiosk.locator(".map-box .seat")).to_have_count(0)
    await expect(kiosk.locator(".map-box")).to_have_attribute("data-drawn", "5000")
    await expect(kiosk.locator(".conn")).to_have_class("conn conn-live")
    await expect(kiosk.locator("svg.map-symbols #mark-clock")).to_have_count(1)  # the legend's marks
    await canvas.focus()
    await kiosk.keyboard.press("ArrowRight")
    await kiosk.keyboard.press("Enter")
    await expect(kiosk.locator(".seat-info")).to_have_text("Row Z seat 52, standard, 50,000 IDR, selected")
    await expect(kiosk.locator("#sale-total")).to_have_text("50,000 IDR")
    await expect(kiosk.locator(".map-tip")).to_have_text("Row Z seat 52, standard, 50,000 IDR, selected")
    await screenshot(kiosk, "kiosk-arena", full_page=False)
    await kiosk.locator("#pay-cash").click()
    await expect(kiosk.locator(".ticket")).to_have_count(1)
    assert (await rt.holds.inventory.snapshot(screening)).seats.get("Z52") == "sold"
