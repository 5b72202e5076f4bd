"""What the browser tests do on the pages, as plain helpers (the fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.support import TIMEOUT_FACTOR, User

SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS: Final = int(5000 * TIMEOUT_FACTOR)


class Browsers:
    """Opens pages, each in its own browser context (its own cookies: one person each)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    async def page(
        self, base_url: str, *, user: User | None = None, width: int = 1280, height: int = 900, **options: Any
    ) -> Page:
        context = await self.browser.new_context(
            base_url=base_url, viewport={"width": width, "height": height}, **options
        )
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        if user is not None:
            # The same login a person makes; the response's HttpOnly cookies land in this context.
            response = await context.request.post(
                "/api/auth/login", data={"email": user.email, "password": user.password}
            )
            assert response.ok, await response.text()
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Written to test-artifacts/screenshots/ (gitignored), for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


def seat(page: Page, label: str) -> Locator:
    return page.locator(f'.seat[data-label="{label}"]')


async def open_screening(page: Page, screening: int) -> None:
    """The customer's page of one screening, once its live map is connected."""
    await page.goto(f"/#/screening/{screening}")
    await expect(page.locator(".conn")).to_have_class("conn conn-live")


async def log_in_here(page: Page, user: User) -> None:
    """Fill the inline login dialog the page has opened."""
    dialog = page.locator(".login-dialog")
    await expect(dialog).to_be_visible()
    await dialog.locator("#login-email").fill(user.email)
    await dialog.locator("#login-password").fill(user.password)
    await dialog.locator("button[type=submit]").click()
    await expect(dialog).to_have_count(0)
