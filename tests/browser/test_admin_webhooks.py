"""The admin console's webhooks screen in a real browser: register, see the secret once, read the
delivery log, retry a dead letter."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
from playwright.async_api import Page, expect

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.browser.pages import Browsers, log_in_here
from tests.conftest import running
from tests.shopping import buy
from tests.support import TIMEOUT_FACTOR, create_user, make_screening, quick_users
from tests.webhooking import FAST, Receiver, delivering, serving, wait_until

SHOTS = Path("/tmp/shots")


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _add_endpoint(page: Page, url: str) -> str:
    """Fill the form with every event type; returns the secret the page shows once (the new
    one: the last endpoint's stays on screen until the answer replaces it)."""
    endpoints = await page.locator("[data-endpoint]").count()
    await page.locator("#webhook-url").fill(url)
    await page.locator("#webhook-description").fill("Box office analytics")
    await page.locator("input[value='seat.status_changed']").check()
    await page.locator("#create-webhook").click()
    await expect(page.locator("[data-endpoint]")).to_have_count(endpoints + 1)
    secret = page.locator("#webhook-secret code.secret")
    await expect(secret).to_contain_text("whsec_")
    return await secret.inner_text()


async def test_admin_registers_an_endpoint_sees_its_log_and_retries_a_dead_delivery(
    browsers: Browsers, rt: Runtime, settings: Settings
) -> None:
    """The admin adds two endpoints in the UI; one takes every event, the other fails until it
    is dead, shows up dead with its error, and the Retry button delivers it."""
    s = replace(settings, webhook_allow_private=True, job_max_attempts=2)
    good, flaky = Receiver(), Receiver(fail_rate=1.0)
    async with (
        serving(good) as good_url,
        serving(flaky) as flaky_url,
        running(s) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        page = await browsers.page(srv.http, width=1440, height=900)
        await page.goto("/admin.html#hooks")
        await log_in_here(page, await create_user(rt, "admin"))
        await expect(page.locator("#main h2").first).to_have_text("Webhooks")
        good.secrets.append(await _add_endpoint(page, good_url))
        flaky.secrets.append(await _add_endpoint(page, flaky_url))
        await expect(page.locator("[data-endpoint]")).to_have_count(2)
        await _shot(page, "admin-webhooks-secret-1440")
        # Refused in the form: not http(s).
        await page.locator("#webhook-url").fill("ftp://files.example.com/x")
        await page.locator("#create-webhook").click()
        await expect(page.locator("#new-webhook .notice")).to_contain_text("must start with http")

        screening = await make_screening(rt, ["SSSSS"])
        (buyer,) = await quick_users(rt, 1)
        await buy(client, buyer, screening, ["A1", "A2"])
        async with delivering(s, replace(FAST, max_attempts=2)):

            async def settled() -> bool:
                async with rt.pool.acquire() as conn:
                    left = await conn.fetchval(
                        "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
                    )
                return bool(left == 0)

            await wait_until(settled)
            assert sorted(e["type"] for e in good.events.values()) == ["order.paid", "seat.status_changed"]
            assert good.refused_signatures == 0 and not flaky.processed

            await page.reload()
            flaky_card = page.locator("[data-endpoint]").nth(1)
            await expect(flaky_card.locator(".dead-count")).to_have_text("2 dead")
            await flaky_card.locator("button.show-log").click()
            await page.locator("#delivery-status").select_option("dead")
            await expect(page.locator("#webhook-log")).to_have_attribute("data-status", "dead")
            dead = page.locator("tr[data-delivery]")
            await expect(dead).to_have_count(2)
            await expect(dead.first).to_contain_text("HTTP 503")
            await dead.first.get_by_role("button", name="Details").click()
            await expect(page.locator(".delivery-detail .attempts li")).to_have_count(2)
            await expect(page.locator(".delivery-detail pre.event-body")).to_contain_text('"type"')
            await _shot(page, "admin-webhooks-1440")

            flaky.fail_rate = 0.0
            await dead.first.get_by_role("button", name="Retry").click()
            await expect(page.locator("#webhook-log .notice")).to_contain_text("will be tried again")
            await wait_until(lambda: _processed(flaky, 1))
            await page.locator("#delivery-status").select_option("delivered")
            await expect(page.locator("#webhook-log")).to_have_attribute("data-status", "delivered")
            await expect(page.locator("tr[data-delivery]")).to_have_count(1)

        narrow = await browsers.page(srv.http, width=390, height=844)
        await narrow.goto(f"/admin.html#hooks?endpoint={await _first_id(rt)}")
        await log_in_here(narrow, await create_user(rt, "admin"))
        await expect(narrow.locator("tr[data-delivery]")).to_have_count(2)
        await expect(narrow.locator("#webhook-secret")).to_have_count(0)  # never shown again
        await _shot(narrow, "admin-webhooks-390")


async def _processed(receiver: Receiver, n: int) -> bool:
    return len(receiver.processed) == n


async def _first_id(rt: Runtime) -> int:
    async with rt.pool.acquire() as conn:
        endpoint_id: int = await conn.fetchval("SELECT min(id) FROM webhook_endpoints")
    return endpoint_id
