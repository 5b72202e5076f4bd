"""The simulated payment page: in the product's style, its deadline in the cinema's own time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import expect

from seatmap.runtime import Runtime
from tests.browser.pages import Browsers, screenshot
from tests.shopping import get_order, hold, order, start_payment
from tests.support import Server, make_screening, quick_users

# Nine hours from UTC and two from the Jakarta the test cinemas are in: a deadline shown in
# the wrong zone cannot read the same.
ZONE: Final = "Asia/Jayapura"
SIZES: Final[dict[str, dict[str, Any]]] = {
    "phone": {"width": 390, "height": 844, "is_mobile": True, "has_touch": True},
    "desktop": {"width": 1440, "height": 900},
}


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_the_payment_page_gives_the_deadline_in_the_cinemas_time(
    browsers: Browsers, server: Server, rt: Runtime, size: str
) -> None:
    """A buyer of a show in Jayapura reads "Pay before 21:42 … Jayapura time (UTC+09:00)", the
    wall clock of the cinema (as on their tickets), not UTC and not the browser's zone."""
    screening = await make_screening(rt, ["SSSSSS"] * 3)
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "UPDATE cinemas SET timezone = $1 WHERE id = (SELECT a.cinema_id FROM screenings s"
            " JOIN auditoriums a ON a.id = s.auditorium_id WHERE s.id = $2)",
            ZONE, screening,
        )  # fmt: skip
    (buyer,) = await quick_users(rt, 1)
    async with httpx.AsyncClient(base_url=server.http) as client:
        held = await hold(client, buyer, screening, ["B3"])
        made = await order(client, buyer, held["token"])
        assert made.status_code == 201, made.text
        payment = await start_payment(client, buyer, made.json()["id"])
        deadline = datetime.fromisoformat((await get_order(client, buyer, made.json()["id"]))["expires_at"])
    local = deadline.astimezone(ZoneInfo(ZONE))
    page = await browsers.page(server.http, timezone_id="Europe/London", **SIZES[size])
    await page.goto(payment["redirect_url"])
    expiry = page.locator(".pay-panel .expiry")
    await expect(expiry).to_have_text(
        f"Pay before {local:%H:%M} on {local:%a} {local.day} {local:%b %Y}, Jayapura time (UTC+09:00)."
    )
    assert f"{deadline.astimezone(UTC):%H:%M}" not in (await expiry.inner_text())
    await expect(expiry.locator("time")).to_have_attribute("datetime", local.isoformat(timespec="seconds"))
    await expect(page.get_by_role("button", name="Approve")).to_be_visible()
    await screenshot(page, f"payment-{size}", full_page=False)
