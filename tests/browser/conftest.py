"""Browser tests: Playwright for Python driving Debian's Chromium against a real server.

The server is the same in-process uvicorn the other tests use (`running`), on its own database
and Redis prefix. Chromium is the system one (`apt-get install -y chromium`); nothing is
downloaded. Without it the tests skip and say why, unless SEATMAP_REQUIRE_BROWSER=1 (CI), where
a missing browser is a failure. Every page's uncaught JavaScript errors fail the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, NoReturn

import asyncpg
import pytest
from playwright.async_api import Browser, Error as PlaywrightError, async_playwright, expect

from seatmap.settings import Secret, Settings
from tests.browser.pages import TIMEOUT_MS, Browsers
from tests.conftest import REDIS_CLUSTER, running, with_database
from tests.redis_cluster import delete_prefix
from tests.support import Server

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


@pytest.fixture(scope="session")
def axe_script(request: pytest.FixtureRequest) -> Path:
    """axe-core (pinned) from the npm registry, cached under pytest's cache dir (tests/browser/axe.py)."""
    from tests.browser.axe import fetch_axe

    try:
        return fetch_axe(request.config.cache.mkdir("axe-core"))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _unavailable(f"axe-core could not be fetched from the npm registry: {exc}")


# One server for a whole module (its tests make their own screenings and users): a server per
# test costs more than most browser tests.
@pytest.fixture(scope="module")
async def module_settings(
    pg_url: str, redis_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    name = f"seatmap_browser_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    prefix = f"b{uuid.uuid4().hex[:10]}"
    yield Settings(
        database_url=with_database(pg_url, name),
        redis_url=redis_url,
        data_dir=tmp_path_factory.mktemp("browser"),
        dev=True,
        jwt_secret=Secret("browser-secret-" + "x" * 40),
        redis_prefix=prefix,
        log_json=False,
        redis_cluster=REDIS_CLUSTER,
    )
    await delete_prefix(redis_url, REDIS_CLUSTER, prefix)
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def module_server(module_settings: Settings) -> AsyncIterator[Server]:
    async with running(module_settings) as srv:
        yield srv
