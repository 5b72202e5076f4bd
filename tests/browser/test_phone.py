"""The customer on a phone (390x844, touch) and on a desktop (1440x900): the whole hall in view on
open, zoom and choose by touch and by keyboard, the hold panel in reach, a hold that follows its
buyer into another browser. One server for the module; each test makes its own screening."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Page, expect

from seatmap.runtime import Runtime
from tests.browser.pages import Browsers, open_screening, seat
from tests.support import Server, create_user, make_screening

SHOTS: Final = Path("/tmp/shots/f15")
HALL: Final = ["SSSSSS_SSSSSSSSSSSSSS_SSSSSS"] * 20 + ["PPPPPP_PPPPPPPPPPPPPP_PPPPPP"] * 4  # 624
SIZES: Final[dict[str, dict[str, Any]]] = {
    "phone": {"width": 390, "height": 844, "is_mobile": True, "has_touch": True},
    "desktop": {"width": 1440, "height": 900},
}


def runtime_of(server: Server) -> Runtime:
    assert server.runtime is not None
    return server.runtime


async def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


async def box(page: Page, selector: str) -> dict[str, float]:
    found = await page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not shown"
    return {"x": found["x"], "y": found["y"], "width": found["width"], "height": found["height"]}


async def in_window(page: Page, selector: str) -> bool:
    b = await box(page, selector)
    size = page.viewport_size
    assert size is not None
    return (
        b["x"] >= 0
        and b["y"] >= 0
        and b["x"] + b["width"] <= size["width"]
        and b["y"] + b["height"] <= size["height"]
    )


async def seat_px(page: Page, label: str) -> float:
    return (await box(page, f'.seat[data-label="{label}"] rect'))["width"]


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_the_whole_hall_is_in_view_on_open(
    browsers: Browsers, module_server: Server, size: str
) -> None:
    """The first and last seats and the standing area are inside the window; prices are in each
    seat's label; after login the header is one line; no horizontal scroll."""
    rt = runtime_of(module_server)
    screening = await make_screening(rt, HALL, ga=[("Standing", 80)])
    user = await create_user(rt, "customer")
    page = await browsers.page(module_server.http, user=user, **SIZES[size])
    await open_screening(page, screening)
    for label in ("A1", "A26", "X1", "X26"):
        assert await in_window(page, f'.seat[data-label="{label}"]'), f"{label} is out of view at {size}"
    assert await in_window(page, ".ga-zone")
    await expect(page.locator(".ga-zone")).to_contain_text("80 of 80 left")
    if size == "desktop":
        assert await in_window(page, ".legend"), "the legend is below the fold"
    await expect(seat(page, "X3")).to_have_attribute("aria-label", "Row X seat 3, premium, 50,000 IDR, free")
    header = await box(page, ".topbar")
    assert header["height"] < 70, f"the header wraps: {header['height']} px tall"
    assert await page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    await shot(page, f"map-open-{size}")


async def test_a_finger_zooms_into_the_section_then_holds_a_seat(
    browsers: Browsers, module_server: Server
) -> None:
    """At 390 px seats are too small for a finger: a tap zooms in (seats >= 24 px), the next tap
    holds; the hold panel is a sheet at the bottom with seats, total, countdown and buttons."""
    rt = runtime_of(module_server)
    screening = await make_screening(rt, HALL)
    page = await browsers.page(module_server.http, user=await create_user(rt, "customer"), **SIZES["phone"])
    await open_screening(page, screening)
    assert await seat_px(page, "K10") < 24
    await seat(page, "K10").tap()
    await expect(page.locator(".map-box")).to_have_class("map-box map-fit zoomed")
    assert await seat_px(page, "K10") >= 24
    await expect(seat(page, "K10")).to_have_attribute("data-state", "free")  # the zoom chose nothing
    await seat(page, "K10").tap()
    await expect(seat(page, "K10")).to_have_attribute("data-state", "mine")
    sheet = page.locator(".hold-panel")
    await expect(sheet.locator("#countdown")).to_be_visible()
    assert await in_window(page, ".hold-panel #checkout")
    assert await in_window(page, ".hold-panel #extend")
    await expect(sheet).to_contain_text("K10")
    await expect(sheet.locator(".total")).to_contain_text("50,000 IDR")
    await page.mouse.wheel(0, 400)  # scrolling the page leaves the sheet where it is
    assert await in_window(page, ".hold-panel #checkout")
    await shot(page, "map-zoomed-hold-phone")
    await shot(page, "map-zoomed-hold-phone-full", full_page=True)


async def pinch(page: Page, x: float, y: float, start: float, end: float) -> None:
    """Two fingers moving apart, through the DevTools protocol's touch input."""
    cdp = await page.context.new_cdp_session(page)

    def points(d: float) -> list[dict[str, Any]]:
        return [{"x": x - d, "y": y, "id": 1}, {"x": x + d, "y": y, "id": 2}]

    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": points(start)})
    for step in range(1, 9):
        d = start + (end - start) * step / 8
        await cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": points(d)})
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


async def test_pinch_zooms_and_two_fingers_choose_nothing(browsers: Browsers, module_server: Server) -> None:
    """Pinching out on the map makes seats bigger and holds nothing."""
    rt = runtime_of(module_server)
    screening = await make_screening(rt, HALL)
    page = await browsers.page(module_server.http, **SIZES["phone"])
    await open_screening(page, screening)
    before = await seat_px(page, "K10")
    b = await box(page, ".map-box")
    await pinch(page, b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, 20, 120)
    after = await seat_px(page, "K10")
    assert after > 2 * before, (before, after)
    assert await page.locator(".seat[data-state=mine]").count() == 0
    await expect(page.locator(".login-dialog")).to_have_count(0)


async def test_keyboard_and_wheel_zoom_then_choose(browsers: Browsers, module_server: Server) -> None:
    """On a desktop: the wheel zooms about the pointer; on the map + zooms, arrows move (the map
    follows), 0 shows the whole hall, Enter holds."""
    rt = runtime_of(module_server)
    screening = await make_screening(rt, HALL)
    page = await browsers.page(module_server.http, user=await create_user(rt, "customer"), **SIZES["desktop"])
    await open_screening(page, screening)
    fit = await seat_px(page, "A1")
    b = await box(page, ".map-box")
    await page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    await page.mouse.wheel(0, -300)
    await page.wait_for_function(
        "fit => document.querySelector('.seat[data-label=A1] rect').getBoundingClientRect().width > fit",
        arg=fit * 1.3,
    )
    await page.mouse.move(2, 2)  # the pointer leaves the map: its hover tip goes
    await page.keyboard.press("0")  # not on the map yet: nothing
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement?.classList.contains('seat')"):
            break
    else:
        raise AssertionError("Tab never reached the seat map")
    await page.keyboard.press("0")
    assert abs(await seat_px(page, "A1") - fit) < 0.5
    await page.keyboard.press("+")
    await page.keyboard.press("+")
    assert await seat_px(page, "A1") > 2 * fit
    for key in ("PageDown", "End"):
        await page.keyboard.press(key)
    await expect(page.locator(".seat:focus")).to_have_attribute("data-label", "X26")
    assert await in_window(page, '.seat[data-label="X26"]'), "the zoomed map did not follow the focus"
    await expect(page.locator(".map-tip")).to_contain_text("Row X seat 26, premium, 50,000 IDR")
    await page.keyboard.press("Enter")
    await expect(seat(page, "X26")).to_have_attribute("data-state", "mine")
    await shot(page, "map-keyboard-zoom-desktop")


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_a_second_browser_of_the_same_buyer_sees_and_extends_the_hold(
    browsers: Browsers, module_server: Server, size: str
) -> None:
    """The buyer holds C3 in one browser; another (own cookies, same account) shows C3 as theirs
    with the countdown, extends it, and adds C4 to the same hold; a stranger sees both held."""
    rt = runtime_of(module_server)
    screening = await make_screening(rt, ["S" * 10] * 6)
    buyer = await create_user(rt, "customer")
    first = await browsers.page(module_server.http, user=buyer, **SIZES[size])
    await open_screening(first, screening)
    await seat(first, "C3").click()
    await expect(seat(first, "C3")).to_have_attribute("data-state", "mine")

    second = await browsers.page(module_server.http, user=buyer, **SIZES[size])
    await open_screening(second, screening)
    await expect(seat(second, "C3")).to_have_attribute("data-state", "mine")
    await expect(second.locator("#countdown")).to_be_visible()
    (held,) = await holds_of(second)
    await second.locator("#extend").click()
    await expect(second.locator(".side-column .notice")).to_contain_text("extended")
    (extended,) = await holds_of(second)
    assert extended["token"] == held["token"] and extended["expires_at"] > held["expires_at"]
    await seat(second, "C4").click()
    await expect(seat(second, "C4")).to_have_attribute("data-state", "mine")
    assert [h["seats"] for h in await holds_of(first)] == [["C3", "C4"]]
    # The first browser takes the change up when it is looked at again.
    await first.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    await expect(seat(first, "C4")).to_have_attribute("data-state", "mine")
    stranger = await browsers.page(module_server.http, **SIZES[size])
    await open_screening(stranger, screening)
    await expect(seat(stranger, "C4")).to_have_attribute("data-state", "held")
    await shot(second, f"second-browser-{size}", full_page=True)


async def holds_of(page: Page) -> list[dict[str, Any]]:
    response = await page.request.get("/api/holds")
    assert response.ok, await response.text()
    listed: list[dict[str, Any]] = await response.json()
    return listed


@pytest.mark.parametrize("width", [360, 1440, 3840])
async def test_the_kiosk_fits_from_a_phone_to_4k(
    browsers: Browsers, module_server: Server, width: int
) -> None:
    """Sale and door at 360 px, 1440 px and 4K: no horizontal scroll; the card-receipt field is
    inside the window and takes input."""
    rt = runtime_of(module_server)
    await make_screening(rt, HALL, starts_in=timedelta(minutes=40))
    staff = await create_user(rt, "staff")
    height = {360: 740, 1440: 900, 3840: 2160}[width]
    page = await browsers.page(module_server.http, user=staff, width=width, height=height)
    await page.goto("/kiosk.html")
    await expect(page.locator(".seat").first).to_be_visible()
    wide = "() => document.documentElement.scrollWidth - innerWidth"
    assert await page.evaluate(wide) <= 0, f"the sale scrolls sideways at {width} px"
    for field in ("#card-ref",):
        target = page.locator(field)
        if await target.count():
            await target.scroll_into_view_if_needed()
            b = await box(page, field)
            assert b["x"] >= 0 and b["x"] + b["width"] <= width, f"{field} is cut off at {width} px"
            await target.fill("12345")
    await shot(page, f"kiosk-sale-{width}", full_page=True)
    await page.goto("/kiosk.html#door")
    await expect(page.locator(".door-form")).to_be_visible()
    assert await page.evaluate(wide) <= 0, f"the door scrolls sideways at {width} px"
    await shot(page, f"kiosk-door-{width}", full_page=True)


async def test_browse_opens_on_the_next_day_with_screenings_and_a_cancelled_map_says_so(
    browsers: Browsers, module_server: Server
) -> None:
    """A city whose next screening is in three days opens on that day, its showtime shown; a
    cancelled screening's map says "Cancelled" over the seats."""
    rt = runtime_of(module_server)
    city = f"Kota {uuid.uuid4().hex[:6]}"
    screening = await make_screening(rt, ["S" * 10] * 4, starts_in=timedelta(days=3))
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "UPDATE cinemas SET city = $1 WHERE id = (SELECT a.cinema_id FROM screenings s"
            " JOIN auditoriums a ON a.id = s.auditorium_id WHERE s.id = $2)",
            city, screening,
        )  # fmt: skip
        day = await conn.fetchval(
            "SELECT (s.starts_at AT TIME ZONE c.timezone)::date FROM screenings s"
            " JOIN auditoriums a ON a.id = s.auditorium_id JOIN cinemas c ON c.id = a.cinema_id"
            " WHERE s.id = $1",
            screening,
        )
    page = await browsers.page(module_server.http, **SIZES["phone"])
    await page.goto(f"/#/?{urlencode({'city': city})}")
    await expect(page.locator('.day[aria-pressed="true"]')).to_have_attribute("data-date", day.isoformat())
    await expect(page.locator(f'a.time[data-screening="{screening}"]')).to_be_visible()
    await shot(page, "browse-next-day-phone", full_page=True)
    cancelled = await make_screening(rt, ["S" * 10] * 4, status="cancelled")
    await page.goto(f"/#/screening/{cancelled}")
    await expect(page.locator(".map-box")).to_have_attribute("data-status", "cancelled")
    await expect(page.locator(".banner")).to_contain_text("cancelled")
    await shot(page, "map-cancelled-phone")


async def test_browse_days_are_the_citys_days_not_the_browsers(
    browsers: Browsers, module_server: Server
) -> None:
    """A visitor whose own day is not Jakarta's (a browser 19 h behind it, or 7 h ahead late in
    its day) sees "Today" on Jakarta's today, the day its cinemas' showtimes are on."""
    rt = runtime_of(module_server)
    await make_screening(rt, ["S" * 10] * 4, starts_in=timedelta(days=1))
    here = datetime.now(ZoneInfo("Asia/Jakarta"))
    zone = "Etc/GMT+12" if here.hour < 19 else "Pacific/Kiritimati"
    page = await browsers.page(module_server.http, timezone_id=zone, **SIZES["phone"])
    await page.goto(f"/#/?{urlencode({'city': 'Jakarta'})}")
    today = page.locator(".day").first
    await expect(today).to_have_text("Today")
    await expect(today).to_have_attribute("data-date", here.date().isoformat())
    await expect(page.locator(".day").nth(1)).to_have_attribute(
        "data-date", (here.date() + timedelta(days=1)).isoformat()
    )
