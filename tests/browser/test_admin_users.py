"""The admin console's Users screen in a real browser: find, disable and enable, change a role,
create an organizer and give it cinemas."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import Page, expect

from seatmap.runtime import Runtime
from tests.browser.pages import Browsers, log_in_here, screenshot
from tests.support import PASSWORD, Server, User, create_user, login, make_screening

SHOTS = Path("/tmp/shots")


async def _shot(page: Page, name: str) -> None:
    """In test-artifacts/screenshots/ as every browser test's, and in /tmp/shots/ for review."""
    path = await screenshot(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a local directory, once)
    (SHOTS / path.name).write_bytes(path.read_bytes())


async def _cinemas(rt: Runtime, *screenings: int) -> list[int]:
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT a.cinema_id FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE s.id = ANY($1::bigint[]) ORDER BY a.cinema_id",
            list(screenings),
        )
    return [r["cinema_id"] for r in rows]


async def test_admin_manages_accounts_from_the_users_screen(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The admin finds the cashier who left and disables the account (their token stops working
    and they cannot log in), enables it again, makes a customer staff, and creates an organizer
    for one cinema, then gives it a second."""
    screenings = [await make_screening(rt, ["SS"]), await make_screening(rt, ["SS"])]
    first, second = await _cinemas(rt, *screenings)
    admin = await create_user(rt, "admin", email="boss@example.com")
    cashier = await login(client, await create_user(rt, "staff", email="rina.kasir@example.com"))
    budi = await create_user(rt, email="budi@example.com")

    page = await browsers.page(server.http, width=1440, height=900)
    await page.goto("/admin.html#users")
    await log_in_here(page, admin)
    rows = page.locator("tr[data-user]")
    await expect(rows).to_have_count(3)

    await page.locator("#user-search").fill("KASIR")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("rina.kasir@example.com")
    await page.locator(f'button[data-toggle="{cashier.id}"]').click()
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#users-message")).to_contain_text("rina.kasir@example.com is disabled")
    await expect(rows.first).to_contain_text("Disabled")
    assert (await client.get("/api/me", headers=cashier.headers)).status_code == 401
    again = await client.post("/api/auth/login", json={"email": cashier.email, "password": PASSWORD})
    assert again.status_code == 403 and again.json()["error"]["code"] == "account_disabled"
    await page.locator(f'button[data-toggle="{cashier.id}"]').click()
    await expect(rows.first).to_contain_text("Active")
    assert (
        await client.post("/api/auth/login", json={"email": cashier.email, "password": PASSWORD})
    ).is_success

    await page.locator("#user-search").fill("")
    await expect(rows).to_have_count(3)
    await page.locator(f'select[data-role-of="{budi.id}"]').select_option("staff")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#users-message")).to_contain_text("budi@example.com is now staff")

    await page.locator("#nu-name").fill("Dedi Mulyadi")
    await page.locator("#nu-email").fill("dedi@example.com")
    await page.locator("#nu-password").fill(PASSWORD)
    await page.locator("#nu-role").select_option("organizer")
    await page.locator(f"#nu-cinema-{first}").check()
    await page.locator("#create-user").click()
    await expect(page.locator("#new-user .notice")).to_contain_text("Created dedi@example.com (organizer)")
    await expect(rows).to_have_count(4)
    async with rt.pool.acquire() as conn:
        dedi = await conn.fetchval("SELECT id FROM users WHERE email = 'dedi@example.com'")
    organizer = await login(client, User(dedi, "dedi@example.com", PASSWORD, "organizer"))
    for screening, status in zip(screenings, (200, 403), strict=True):
        r = await client.get(f"/api/admin/screenings/{screening}/blocks", headers=organizer.headers)
        assert r.status_code == status

    row = page.locator(f'tr[data-user="{dedi}"]')
    await row.locator("details.cinemas summary").click()
    await row.locator(f"#uc-{dedi}-{second}").check()
    await row.locator(f'button[data-save-cinemas="{dedi}"]').click()
    await expect(page.locator("#users-message")).to_contain_text("dedi@example.com organizes")
    async with rt.pool.acquire() as conn:
        assigned = await conn.fetch(
            "SELECT cinema_id FROM organizer_cinemas WHERE user_id = $1 ORDER BY 1", dedi
        )
    assert [r["cinema_id"] for r in assigned] == [first, second]
    await page.locator(f'button[data-toggle="{budi.id}"]').click()
    await page.locator("#confirm-ok").click()
    await expect(page.locator(f'tr[data-user="{budi.id}"]')).to_contain_text("Disabled")
    await row.locator("details.cinemas summary").click()
    await _shot(page, "admin-users-1440")

    phone = await browsers.page(server.http, user=admin, width=390, height=844)
    await phone.goto("/admin.html#users")
    await expect(phone.locator("tr[data-user]")).to_have_count(4)
    await _shot(phone, "admin-users-390")


async def test_an_organizer_runs_only_its_own_cinema_in_the_console(
    browsers: Browsers, server: Server, rt: Runtime, client: httpx.AsyncClient
) -> None:
    """An organizer gets the screenings, halls and refunds of its own cinema and nothing else:
    no Films or Users tab, no other cinema to pick, and a draft it schedules stays visible to it."""
    own, other = await _cinemas(rt, await make_screening(rt, ["SS"]), await make_screening(rt, ["SS"]))
    admin = await login(client, await create_user(rt, "admin"))
    r = await client.post(
        "/api/admin/users",
        json={
            "email": "dedi@example.com",
            "password": PASSWORD,
            "name": "Dedi Mulyadi",
            "role": "organizer",
            "cinema_ids": [own],
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    organizer = User(r.json()["id"], "dedi@example.com", PASSWORD, "organizer")

    page = await browsers.page(server.http, width=1440, height=900)
    await page.goto("/admin.html")
    await log_in_here(page, organizer)
    await expect(page.locator("#tabs button")).to_have_text(
        ["Screenings", "Cinemas & halls", "Refunds", "Bookings", "Door lists", "Reports"]
    )
    await expect(page.locator("#adm-cinema option")).to_have_count(1)
    await expect(page.locator("#adm-cinema option")).to_have_attribute("value", str(own))
    await page.locator("#new-status").select_option("draft")
    tomorrow = (datetime.now(ZoneInfo("Asia/Jakarta")) + timedelta(days=1)).date()
    await page.locator("#new-date").fill(tomorrow.isoformat())
    await page.locator("#new-time").fill("21:15")
    await page.locator("#create-screening").click()
    await expect(page.locator("#new-screening .notice")).to_contain_text("Created: Test film")
    await expect(page.locator("tr[data-screening]")).to_contain_text(["21:15"])
    async with rt.pool.acquire() as conn:
        created = await conn.fetchrow(
            "SELECT a.cinema_id, s.status FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " ORDER BY s.id DESC LIMIT 1"
        )
    assert created is not None and (created["cinema_id"], created["status"]) == (own, "draft")
    await _shot(page, "admin-organizer-1440")

    await page.locator('button[data-tab="cinemas"]').click()
    await expect(page.locator("#main table tbody tr")).to_have_count(1)
    await expect(page.locator("#new-hall-button")).to_be_visible()
    assert other != own
