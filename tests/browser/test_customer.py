"""The customer's web pages in a real browser: the live seat map, holds, checkout, tickets."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import timedelta

import httpx
from playwright.async_api import WebSocketRoute, expect

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.browser.pages import Browsers, log_in_here, open_screening, screenshot, seat
from tests.conftest import running
from tests.shopping import hold
from tests.support import PASSWORD, Server, create_user, latest_code, login, make_screening

SOON = timedelta(minutes=30)  # on sale, and inside the door's check-in window


async def test_two_viewers_see_hold_expiry_and_sale_live(
    browsers: Browsers, settings: Settings, rt: Runtime
) -> None:
    """B sees A hold F12 within 1 s, the 2 s hold expire, A buy F13 (sold); A's ticket has a QR."""
    async with running(replace(settings, hold_ttl=2)) as srv:
        screening = await make_screening(rt, ["S" * 16] * 8, starts_in=SOON)
        buyer = await create_user(rt, "customer")
        a = await browsers.page(srv.http)
        b = await browsers.page(srv.http)
        await open_screening(b, screening)
        await open_screening(a, screening)
        await expect(b.locator(".viewers")).to_have_text("2 people viewing now")
        await screenshot(b, "customer-screening")

        await seat(a, "F12").click()
        await log_in_here(a, buyer)
        await expect(seat(a, "F12")).to_have_attribute("data-state", "mine")
        await expect(seat(b, "F12")).to_have_attribute("data-state", "held", timeout=1000)
        await expect(a.locator("#countdown")).to_be_visible()
        await screenshot(a, "customer-hold")

        # The 2-second hold runs out by itself: both see F12 free again, A is told why.
        await expect(seat(b, "F12")).to_have_attribute("data-state", "free", timeout=6000)
        await expect(seat(a, "F12")).to_have_attribute("data-state", "free")
        await expect(a.locator(".side-column .notice")).to_contain_text("expired")

        await seat(a, "F13").click()
        await expect(seat(a, "F13")).to_have_attribute("data-state", "mine")
        await a.locator("#checkout").click()  # the order extends the hold past its 2 s
        await a.wait_for_url("**/pay/**")
        await screenshot(a, "payment-page")
        await a.get_by_role("button", name="Approve").click()
        await a.get_by_role("link", name="Back to the shop").click()
        await expect(a.locator(".order-status")).to_contain_text("Paid")
        await expect(seat(b, "F13")).to_have_attribute("data-state", "sold")

        tickets = a.locator(".ticket")
        await expect(tickets).to_have_count(1)
        await expect(tickets.first).to_contain_text("Seat F13")
        qr = tickets.first.locator("img.qr")
        await expect(qr).to_be_visible()
        # Visible is not loaded: wait for the image's own load (or error) event if it is still coming.
        loaded = await qr.evaluate(
            """img => img.complete ? img.naturalWidth : new Promise(done => {
                img.addEventListener("load", () => done(img.naturalWidth), {once: true});
                img.addEventListener("error", () => done(0), {once: true});
            })"""
        )
        assert loaded > 0, "the QR image did not load"
        await screenshot(a, "customer-tickets")
        await a.get_by_role("link", name="← My tickets").click()
        await expect(a.locator(".order-list")).to_contain_text("Test film")
        await expect(a.locator(".order-list")).to_contain_text("Paid")


async def test_keyboard_alone_selects_and_holds_a_seat(
    browsers: Browsers, server: Server, rt: Runtime
) -> None:
    """Without a mouse: Tab into the map, arrow to C3, Enter, log in by keyboard; C3 is held."""
    screening = await make_screening(rt, ["S" * 10] * 6, starts_in=SOON)
    user = await create_user(rt, "customer")
    page = await browsers.page(server.http)
    await open_screening(page, screening)

    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement?.classList.contains('seat')"):
            break
    else:
        raise AssertionError("Tab never reached the seat map")
    for key in ("PageUp", "Home", "ArrowDown", "ArrowDown", "ArrowRight", "ArrowRight"):
        await page.keyboard.press(key)
    focused = page.locator(".seat:focus")
    await expect(focused).to_have_attribute("data-label", "C3")
    await expect(focused).to_have_attribute("aria-label", "Row C seat 3, standard, 50,000 IDR, free")

    await page.keyboard.press("Enter")
    await expect(page.locator("#login-email")).to_be_focused()
    await page.keyboard.type(user.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(user.password)
    await page.keyboard.press("Enter")

    await expect(seat(page, "C3")).to_have_attribute("data-state", "mine")
    await expect(seat(page, "C3")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator(".hold-lines")).to_contain_text("C3")
    await screenshot(page, "customer-keyboard-hold")


async def test_create_account_asks_for_the_mailed_code_then_holds(
    browsers: Browsers, server: Server, rt: Runtime
) -> None:
    """A new visitor creates an account from the seat map, is asked inline for the code (a wrong
    one is refused, a new one can be sent), enters it, and the seat they clicked is theirs."""
    screening = await make_screening(rt, ["S" * 10] * 4, starts_in=SOON)
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    page = await browsers.page(server.http)
    await open_screening(page, screening)

    await seat(page, "B1").click()
    dialog = page.locator(".login-dialog")
    await dialog.get_by_role("button", name="Create an account").click()
    await dialog.locator("#login-name").fill("Ada")
    await dialog.locator("#login-email").fill(email)
    await dialog.locator("#login-password").fill(PASSWORD)
    await dialog.get_by_role("button", name="Create account and log in").click()

    await expect(dialog.locator("#verify-code")).to_be_focused()
    await expect(dialog).to_contain_text(email)
    await dialog.locator("#verify-code").fill(f"{(int(await latest_code(rt, email)) + 1) % 1_000_000:06d}")
    await dialog.get_by_role("button", name="Verify email").click()
    await expect(dialog.locator(".notice")).to_contain_text("wrong")
    await dialog.get_by_role("button", name="Send a new code").click()
    await expect(dialog.locator(".notice")).to_contain_text("new code is on its way")
    await screenshot(page, "customer-verify-code")
    await dialog.locator("#verify-code").fill(await latest_code(rt, email))
    await dialog.get_by_role("button", name="Verify email").click()

    await expect(dialog).to_have_count(0)
    await expect(seat(page, "B1")).to_have_attribute("data-state", "mine")


async def test_refusals_name_the_seat_and_the_largest_block(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """A seat taken by someone else, a stranded seat and too few seats together each say which."""
    screening = await make_screening(rt, ["S" * 8] * 3, starts_in=SOON)
    other = await login(client, await create_user(rt, "customer"))
    await hold(client, other, screening, ["A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4", "B5", "B6"])
    page = await browsers.page(server.http, user=await create_user(rt, "customer"))
    await open_screening(page, screening)
    message = page.locator(".side-column .notice").first

    await seat(page, "A6").click()  # would leave A5 alone between A4 (held) and A6
    await expect(message).to_contain_text("leave seat A5 on its own")
    await seat(page, "C3").click()
    await expect(seat(page, "C3")).to_have_attribute("data-state", "mine")
    await page.locator("#release").click()
    await expect(seat(page, "C3")).to_have_attribute("data-state", "free")

    await page.locator("#best-count").select_option("9")
    await page.locator("#best-button").click()
    await expect(message).to_contain_text(
        "no longer 9 seats together; the largest block still free has 8 seats"
    )
    await page.locator("#best-count").select_option("3")
    await page.locator("#best-button").click()
    await expect(page.locator(".seat[data-state=mine]")).to_have_count(3)
    await page.locator("#extend").click()
    await expect(message).to_have_text("Your hold is extended.")
    await screenshot(page, "customer-best-available")


async def test_600_seat_hall_draws_once_and_updates_only_changed_seats(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """On a 360 px phone a 624-seat hall is drawn once; a hold repaints its seats, nothing else."""
    hall = ["SSSSSS_SSSSSSSSSSSSSS_SSSSSS"] * 20 + ["PPPPPP_PPPPPPPPPPPPPP_PPPPPP"] * 4
    screening = await make_screening(rt, hall)
    page = await browsers.page(server.http, width=360, height=740, is_mobile=True, has_touch=True)
    started = time.monotonic()
    await open_screening(page, screening)
    drawn = time.monotonic() - started
    assert await page.locator("svg.seatmap .seat").count() == 624
    assert drawn < 5, f"the map took {drawn:.1f} s to draw and connect"
    await page.evaluate(
        """() => {
          window.__seats = [...document.querySelectorAll('svg.seatmap .seat')];
          window.__mutations = 0;
          new MutationObserver((records) => { window.__mutations += records.length; })
            .observe(document.querySelector('svg.seatmap'),
                     {subtree: true, childList: true, attributes: true});
        }"""
    )
    other = await login(client, await create_user(rt, "customer"))
    await hold(client, other, screening, ["K10", "K11", "K12", "K13"])
    await expect(seat(page, "K13")).to_have_attribute("data-state", "held")
    same = await page.evaluate(
        """() => {
          const now = document.querySelectorAll('svg.seatmap .seat');
          return window.__seats.every((el, i) => el === now[i] && el.isConnected);
        }"""
    )
    assert same, "seat elements were replaced: the map was re-rendered"
    # Each changed seat gets its class, data-state, mark, aria-label and aria-disabled set: about 5 each.
    mutations = await page.evaluate("() => window.__mutations")
    assert 4 <= mutations <= 4 * 8, f"{mutations} DOM mutations for 4 changed seats"
    await screenshot(page, "customer-phone-624-seats", full_page=False)


async def test_dropped_connection_shows_it_and_resumes_with_since(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The socket drops: the page says so, retries with back-off, resumes with `since`, catches up."""
    screening = await make_screening(rt, ["S" * 10] * 4, starts_in=SOON)
    page = await browsers.page(server.http)
    attempts: list[tuple[float, str]] = []
    drop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def close_first(ws: WebSocketRoute, upstream: WebSocketRoute) -> None:
        await drop.wait()
        await ws.close(code=1012, reason="restart")
        await upstream.close()

    async def refuse(ws: WebSocketRoute) -> None:
        await asyncio.sleep(0.05)
        await ws.close(code=1012, reason="still restarting")

    def route(ws: WebSocketRoute) -> None:
        """1st connection: through to the server until `drop`; 2nd: closed at once; then through."""
        attempts.append((time.monotonic(), ws.url))
        if len(attempts) == 1:
            tasks.append(asyncio.create_task(close_first(ws, ws.connect_to_server())))
        elif len(attempts) == 2:
            tasks.append(asyncio.create_task(refuse(ws)))
        else:
            ws.connect_to_server()

    await page.route_web_socket("**/ws/screenings/**", route)
    await open_screening(page, screening)

    other = await login(client, await create_user(rt, "customer"))
    drop.set()
    await expect(page.locator(".conn")).to_have_class("conn conn-reconnecting")
    await expect(page.locator(".conn")).to_contain_text("Connection lost")
    await screenshot(page, "customer-reconnecting")
    await hold(client, other, screening, ["B5", "B6"])  # while this page is disconnected

    await expect(page.locator(".conn")).to_have_class("conn conn-live", timeout=8000)
    await expect(seat(page, "B5")).to_have_attribute("data-state", "held")
    await expect(seat(page, "B6")).to_have_attribute("data-state", "held")
    assert len(attempts) >= 3
    assert "since=" not in attempts[0][1]
    assert all("since=" in url for _, url in attempts[1:3]), attempts
    first_wait = attempts[1][0] - attempts[0][0]
    second_wait = attempts[2][0] - attempts[1][0]
    assert second_wait > 1.2 * 0.5, f"no back-off: waited {second_wait:.2f} s before the third try"
    assert first_wait > 0
    await asyncio.gather(*tasks)
