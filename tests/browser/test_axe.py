"""axe-core on every main page: customer browse, map, hold panel, login, payment, tickets, kiosk
sale and door, the admin pages and /docs. Any serious or critical violation fails; moderate and
minor ones are listed (run with `-s`). One server for the module."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.async_api import Page, expect

from tests.browser.axe import FAILING, audit, summary
from tests.browser.pages import Browsers, log_in_here, open_screening, seat
from tests.support import Server, create_user, make_screening

SHOTS: Final = Path("/tmp/shots/f15")


class Audits:
    def __init__(self, script: Path, size: str) -> None:
        self.script = script
        self.size = size
        self.found: dict[str, dict[str, list[dict[str, Any]]]] = {}

    async def __call__(self, page: Page, name: str, *, shot: bool = True) -> None:
        await page.wait_for_load_state("load")
        self.found[name] = await audit(page, self.script)
        if shot:
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / f"axe-{name}-{self.size}.png"), full_page=True)

    def check(self) -> None:
        report = "\n".join(s for name, found in self.found.items() if (s := summary(name, found)))
        print(f"\naxe-core on {len(self.found)} pages at {self.size}:\n{report or '  nothing found'}")
        failing = {name: [v["id"] for i in FAILING for v in f.get(i, [])] for name, f in self.found.items()}
        assert not any(failing.values()), f"serious or critical axe findings: {failing}\n{report}"


SIZES: Final[dict[str, dict[str, Any]]] = {
    "phone": {"width": 390, "height": 844, "is_mobile": True, "has_touch": True},
    "desktop": {"width": 1440, "height": 900},
}


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_no_serious_accessibility_findings_on_any_main_page(
    browsers: Browsers, module_server: Server, axe_script: Path, size: str
) -> None:
    """Every main page, in the state a person sees it, at 390x844 and 1440x900, has no serious or
    critical axe violation (each is also a screenshot in /tmp/shots/f15/axe-*-SIZE.png)."""
    rt = module_server.runtime
    assert rt is not None
    screening = await make_screening(rt, ["S" * 12] * 6, ga=[("Floor", 20)], starts_in=timedelta(minutes=30))
    audits = Audits(axe_script, size)
    customer = await create_user(rt, "customer")

    page = await browsers.page(module_server.http, **SIZES[size])
    await page.goto("/")
    await expect(page.locator("main h1")).to_be_visible()
    await audits(page, "browse")
    await page.locator("#login-button").click()
    await expect(page.locator(".login-dialog")).to_be_visible()
    await audits(page, "login")
    await page.keyboard.press("Escape")

    await open_screening(page, screening)
    await audits(page, "map")
    await seat(page, "C5").click()
    await log_in_here(page, customer)
    await expect(seat(page, "C5")).to_have_attribute("data-state", "mine")
    await audits(page, "hold-panel")
    await page.locator("#checkout").click()
    await page.wait_for_url("**/pay/**")
    await audits(page, "payment")
    await page.get_by_role("button", name="Approve").click()
    await page.get_by_role("link", name="Back to the shop").click()
    await expect(page.locator(".order-status")).to_contain_text("Paid")
    await expect(page.locator(".ticket img.qr")).to_be_visible()
    await audits(page, "tickets")
    await page.goto("/#/orders")
    await expect(page.locator(".order-list")).to_be_visible()
    await audits(page, "my-tickets")

    kiosk = await browsers.page(module_server.http, **SIZES[size])
    await kiosk.goto("/kiosk.html")
    await log_in_here(kiosk, await create_user(rt, "staff"))
    await expect(kiosk.locator(".seat").first).to_be_visible()
    await audits(kiosk, "kiosk-sale")
    await kiosk.goto("/kiosk.html#door")
    await expect(kiosk.locator(".door-form")).to_be_visible()
    await audits(kiosk, "kiosk-door")

    admin = await browsers.page(module_server.http, **SIZES[size])
    await admin.goto("/admin.html")
    await log_in_here(admin, await create_user(rt, "admin"))
    await expect(admin.locator("#main h2").first).to_be_visible()
    await audits(admin, "admin-screenings")
    for tab in await admin.locator("button[data-tab]").evaluate_all("els => els.map(e => e.dataset.tab)"):
        await admin.locator(f'button[data-tab="{tab}"]').click()
        await expect(admin.locator(f'button[data-tab="{tab}"]')).to_have_attribute("aria-selected", "true")
        await admin.wait_for_timeout(300)
        await audits(admin, f"admin-{tab}")

    await page.goto("/docs")
    await audits(page, "docs", shot=False)
    audits.check()
