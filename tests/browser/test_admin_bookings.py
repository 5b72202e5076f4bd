"""The back office in a real browser: bookings with search, order detail and CSV download, the door
list in the admin console and at the kiosk's door, and the reports with a screening's seat history."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Page, expect

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.browser.pages import Browsers, screenshot
from tests.shopping import buy
from tests.support import Server, User, create_user, logged_in, quick_users

JAKARTA: Final = ZoneInfo("Asia/Jakarta")
SHOTS: Final = Path("/tmp/shots")
ZOE: Final = 'Zoë "Zee" O\'Brien, Jr.'
YAMADA: Final = "山田 太郎"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Check-in two hours before the start, refunds until a minute before: one screening, both."""
    return replace(settings, refund_deadline=60, checkin_opens_before=7200)


@dataclass(frozen=True)
class Sold:
    screening: int
    cinema: int
    day: str
    web_order: int
    codes: dict[str, str]  # seat -> ticket code
    staff: User


async def _sell(rt: Runtime, client: httpx.AsyncClient) -> Sold:
    """A screening in 30 minutes: a web order of A1 and A2 named for Zoë and 山田, a box-office
    sale of C1, A1 checked in at Door 2, and C8 blocked."""
    from tests.support import make_screening

    screening = await make_screening(rt, ["SSSSSSSS"] * 3, starts_in=timedelta(minutes=30), strand_rule=False)
    (buyer,), (admin,) = await quick_users(rt, 1), await quick_users(rt, 1, "admin")  # no password hashing
    web = await buy(client, buyer, screening, ["A1", "A2"], holder_names=[ZOE, YAMADA])
    staff = await logged_in(rt, client, "staff")  # the kiosk logs in with its password
    body = {"screening_id": screening, "payment_method": "cash", "seats": ["C1"], "holder_names": ["Walk-in"]}
    sale = await client.post("/api/boxoffice/sales", json=body, headers=staff.headers)
    assert sale.status_code == 201, sale.text
    codes = {t["seat"]: t["code"] for t in web["tickets"]} | {
        t["seat"]: t["code"] for t in sale.json()["tickets"]
    }
    r = await client.post(
        f"/api/tickets/{codes['A1']}/check-in", json={"gate": "Door 2"}, headers=staff.headers
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/admin/screenings/{screening}/blocks", json={"seats": ["C8"]}, headers=admin.headers
    )
    assert r.status_code in (200, 201), r.text
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT a.cinema_id, s.starts_at FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE s.id = $1",
            screening,
        )
    assert row is not None
    day = row["starts_at"].astimezone(JAKARTA).date().isoformat()
    return Sold(screening, row["cinema_id"], day, web["id"], codes, staff)


async def both_sizes(page: Page, name: str) -> None:
    """Screenshots at 1440x900 and 390x844 (test-artifacts/screenshots and /tmp/shots)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1440, 900), (390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        shot = await screenshot(page, f"{name}-{width}")
        await asyncio.to_thread(shutil.copyfile, shot, SHOTS / shot.name)
    await page.set_viewport_size({"width": 1440, "height": 900})


async def test_admin_finds_a_booking_reads_its_history_and_downloads_the_csv(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """Bookings list, a search by a holder's name, the order's tickets, payment and history, and a
    CSV download a spreadsheet reads with the names intact."""
    sold = await _sell(rt, client)
    page = await browsers.page(server.http, user=await create_user(rt, "admin"), width=1440, height=900)
    await page.goto("/admin.html#bookings")
    rows = page.locator("#bookings tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Box office")
    await page.locator("#bk-q").fill("o'brien")
    await page.locator("#bk-filters button[type=submit]").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(ZOE)
    await expect(rows.first).to_contain_text("A1 A2")
    await rows.first.locator("button.link").click()
    detail = page.locator("#order-detail")
    await expect(detail.locator("h2")).to_contain_text(f"Order {sold.web_order}")
    await expect(detail).to_contain_text("Door 2")
    await expect(detail.locator('#order-history li[data-event="paid"]')).to_have_count(1)
    await expect(detail).to_contain_text("simulated")
    await both_sizes(page, "admin-bookings")

    async with page.expect_download() as download_info:
        await page.locator("#bk-csv").click()
    download = await download_info.value
    assert download.suggested_filename.startswith("bookings") and download.suggested_filename.endswith(".csv")
    path = await download.path()
    raw = await asyncio.to_thread(Path(path).read_bytes)
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert [row["holder_names"] for row in table] == [f"{ZOE}; {YAMADA}"]


async def test_door_list_in_the_console_and_at_the_kiosk_door(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The admin's door list shows each seat's holder and who is in; at the kiosk's door the list
    sits under the scanner and marks a ticket in as soon as it is scanned."""
    sold = await _sell(rt, client)
    page = await browsers.page(server.http, user=await create_user(rt, "admin"), width=1440, height=900)
    await page.goto(f"/admin.html#door?cinema={sold.cinema}&date={sold.day}&screening={sold.screening}")
    roster = page.locator("#door-list tbody tr")
    await expect(roster).to_have_count(3)
    await expect(page.locator("#door-list-summary")).to_contain_text("1 of 3 in")
    await expect(roster.nth(0)).to_contain_text(ZOE)
    await expect(roster.nth(0)).to_contain_text("Door 2")
    await expect(roster.nth(0)).to_have_class("in")
    await expect(roster.nth(1)).to_contain_text("not yet")
    await page.locator("#door-list-filter").fill("山田")
    await expect(roster).to_have_count(1)
    await page.locator("#door-list-filter").fill("")
    await both_sizes(page, "admin-door-list")

    kiosk = await browsers.page(server.http, user=sold.staff, width=1440, height=900)
    await kiosk.goto("/kiosk.html#door")
    await kiosk.locator("#door-screening").select_option(str(sold.screening))
    at_door = kiosk.locator("#door-list tbody tr")
    await expect(at_door).to_have_count(3)
    await kiosk.locator("#ticket-code").fill(sold.codes["C1"])
    await kiosk.locator("#ticket-code").press("Enter")
    await expect(kiosk.locator("#verdict")).to_have_attribute("data-verdict", "admit")
    await expect(kiosk.locator("#door-list-summary")).to_contain_text("2 of 3 in")
    await expect(kiosk.locator(f'#door-list tr[data-code="{sold.codes["C1"]}"]')).to_have_class("in")
    await both_sizes(kiosk, "kiosk-door-list")


async def test_reports_by_day_and_one_screening_with_its_seat_history(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The report by day counts the three tickets; the screening's report has its figures by
    channel and category; the seat history of A1 says who bought it and who let them in."""
    sold = await _sell(rt, client)
    page = await browsers.page(server.http, user=await create_user(rt, "admin"), width=1440, height=900)
    await page.goto(f"/admin.html#reports?cinema={sold.cinema}&date={sold.day}&screening={sold.screening}")
    row = page.locator(f'#report tr[data-key="{sold.day}"]')
    await expect(row).to_contain_text("3 / 23")
    await expect(row).to_contain_text("150,000 IDR")
    await page.locator("#rep-group").select_option("cinema")
    await expect(page.locator(f'#report tr[data-key="{sold.cinema}"]')).to_contain_text("3 / 23")

    one = page.locator("#screening-report")
    await expect(one.locator('[data-figure="sold"]')).to_contain_text("3 of 23")
    await expect(one.locator('[data-figure="blocked"]')).to_contain_text("1")
    await expect(one.locator('[data-figure="net"]')).to_contain_text("150,000 IDR")
    await expect(one.locator('#by-channel tr[data-slice="boxoffice"]')).to_contain_text("50,000 IDR")
    await expect(one.locator('#by-channel tr[data-slice="web"]')).to_contain_text("100,000 IDR")
    await page.locator("#history-seat").fill("a1")
    history = one.locator("#seat-history tbody tr")
    await expect(one.locator('#seat-history tr[data-event="checked_in"]')).to_contain_text(sold.staff.email)
    await expect(one.locator('#seat-history tr[data-event="sold"]').first).to_be_visible()
    assert await history.count() >= 3
    await both_sizes(page, "admin-reports")
