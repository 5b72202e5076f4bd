"""Browser tests: Playwright for Python driving Debian's Chromium against a real server.

The server is the same in-process uvicorn the other tests use (`running`), on its own database
and Redis prefix. Chromium is the system one (`apt-get install -y chromium`); nothing is
downloaded. Without it the tests skip and say why, unless SEATMAP_REQUIRE_BROWSER=1 (CI), where
a missing browser is a failure. Every page's uncaught JavaScript errors fail the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Final, NoReturn

import pytest
from playwright.async_api import Browser, Error as PlaywrightError, async_playwright, expect

from tests.browser.pages import TIMEOUT_MS, Browsers

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("SEATMAP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (SEATMAP_REQUIRE_BROWSER=1: the browser tests must run here)")
    pytest.skip(f"{reason}; install it with `apt-get install -y chromium` to run the browser tests")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            _unavailable(f"Chromium at {CHROMIUM} did not start: {exc.message.splitlines()[0]}")
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browsers(browser: Browser) -> AsyncIterator[Browsers]:
    opened = Browsers(browser)
    try:
        yield opened
    finally:
        await opened.close()
    assert not opened.errors, f"uncaught JavaScript errors: {opened.errors}"
