"""The back office's bookings: staff find orders by screening, cinema, status, email, time and free
text, page through them, download them as CSV a spreadsheet opens, read the door list, and see one
order's payments, refunds and history."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest

from seatmap.runtime import Runtime
from seatmap.sales.bookings import parse_filters, where
from seatmap.settings import Settings
from tests.refunding import paid_orders
from tests.shopping import buy
from tests.support import PASSWORD, Server, User, create_user, logged_in, login, make_screening

# Names a CSV export must carry intact: a comma, quotes, an apostrophe, a newline, non-ASCII,
# and one that a spreadsheet would run as a formula.
ZOE = 'Zoë "Zee" O\'Brien, Jr.'
YAMADA = "山田 太郎"  # names are one line: control characters are refused at checkout
FORMULA = '=HYPERLINK("http://evil.example","click")'
CSV_ACCEPT = {"Accept": "text/csv"}
JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Refunds until a minute before the start and check-in from two hours before, so one
    screening 30 minutes away can be both refunded and scanned."""
    return replace(settings, refund_deadline=60, checkin_opens_before=7200)


def parse_csv(response: httpx.Response) -> list[dict[str, str]]:
    """The download as a spreadsheet reads it: UTF-8 (BOM skipped), RFC 4180 records."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv; charset=utf-8")
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    raw = response.content
    assert raw.startswith("\ufeff".encode()), "a BOM, so Excel reads UTF-8"
    text = raw.decode("utf-8-sig")
    # Every record ends with CRLF (a newline inside a quoted field stays as it was sent).
    assert text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(
    ("query", "conditions", "args"),
    [
        ({}, "o.id < $1", [99]),
        (
            {"screening_id": "7", "status": "paid"},
            "o.id < $1 AND o.screening_id = $2 AND o.status = $3",
            [99, 7, "paid"],
        ),
        (
            {"status": "expired"},
            "o.id < $1 AND (o.status = 'expired' OR (o.status = 'pending' AND o.expires_at <= now()))",
            [99],
        ),
        ({"email": "A@B.example"}, "o.id < $1 AND lower(u.email) = lower($2)", [99, "A@B.example"]),
        (
            {"from": "2026-12-07", "to": "2026-12-07"},
            "o.id < $1 AND o.created_at >= (($2::date + 0)::timestamp AT TIME ZONE c.timezone)"
            " AND o.created_at < (($3::date + 1)::timestamp AT TIME ZONE c.timezone)",
            [99, date(2026, 12, 7), date(2026, 12, 7)],
        ),
        ({"q": " 50%_off "}, None, [99, "%50\\%\\_off%", "50%_off"]),
        ({"cinema_id": "", "q": ""}, "o.id < $1", [99]),
    ],
)
def test_the_where_clause_has_one_parameterised_condition_per_filter_given(
    query: dict[str, str], conditions: str | None, args: list[Any]
) -> None:
    """Pure: only the filters given become conditions, each value a parameter, never SQL text."""
    sql, values = where(parse_filters(query), None, 99)
    if conditions is not None:
        assert sql == conditions
    assert values == args
    scoped, scoped_values = where(parse_filters(query), [3, 1], 99)
    n = scoped_values.index([3, 1]) + 1  # the organizer's cinemas: one more parameter
    assert f"a.cinema_id = ANY(${n}::bigint[])" in scoped and len(scoped_values) == len(args) + 1


async def _sell_at_counter(client: httpx.AsyncClient, staff: User, screening: int, seats: list[str]) -> Any:
    body = {"screening_id": screening, "payment_method": "cash", "seats": seats, "holder_names": [FORMULA]}
    r = await client.post("/api/boxoffice/sales", json=body, headers=staff.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_staff_find_bookings_by_every_filter_and_page_through_them(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Filters by screening, cinema, status, email, from/to and free text each find the right orders;
    the pages, newest first, add up to every order once."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 3, starts_in=timedelta(minutes=30), strand_rule=False)
    other = await make_screening(rt, ["SSSS"], strand_rule=False)
    bulk = await paid_orders(rt, screening, 5, first_seat=8)
    elsewhere = await paid_orders(rt, other, 2)
    buyer = await login(client, await create_user(rt, email="zoe.buyer@example.com"))
    web = await buy(client, buyer, screening, ["A1", "A2"], holder_names=[ZOE, YAMADA])
    staff = await logged_in(rt, client, "staff")
    counter = await _sell_at_counter(client, staff, screening, ["C1"])
    r = await client.post(f"/api/orders/{bulk[0].id}/refund", headers=bulk[0].buyer.headers)
    assert r.status_code == 202, r.text

    async def ids(query: str, user: User = staff) -> list[int]:
        r = await client.get(f"/api/admin/orders?{query}", headers=user.headers)
        assert r.status_code == 200, r.text
        return [item["id"] for item in r.json()["items"]]

    on_screening = sorted([o.id for o in bulk] + [web["id"], counter["id"]], reverse=True)
    assert await ids(f"screening_id={screening}") == on_screening
    assert await ids(f"screening_id={other}") == sorted([o.id for o in elsewhere], reverse=True)
    async with rt.pool.acquire() as conn:
        cinema = await conn.fetchval(
            "SELECT a.cinema_id FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE s.id = $1",
            other,
        )
    assert await ids(f"cinema_id={cinema}") == sorted([o.id for o in elsewhere], reverse=True)
    assert await ids("status=refund_pending") == [bulk[0].id]
    assert await ids("email=ZOE.BUYER@example.com") == [web["id"]]
    assert await ids("q=o'brien") == [web["id"]]  # a holder's name, any case
    assert await ids("q=zoe.buyer") == [web["id"]]  # part of the email
    assert await ids(f"q={web['tickets'][1]['code']}") == [web["id"]]  # a ticket code, exactly
    assert await ids("q=100%25") == []  # `%` is a character here, not a wildcard
    hour_ago, in_an_hour = (
        urlencode({"t": (datetime.now(UTC) + timedelta(hours=h)).isoformat()})[2:] for h in (-1, 1)
    )
    assert await ids(f"from={in_an_hour}") == []
    assert await ids(f"from={hour_ago}&to={in_an_hour}&screening_id={screening}") == on_screening
    # A day is the cinema's (Jakarta's) calendar day.
    today = datetime.now(JAKARTA).date()
    assert await ids(f"from={today}&to={today}&screening_id={screening}") == on_screening
    assert await ids(f"to={today - timedelta(days=1)}&screening_id={screening}") == []

    seen: list[int] = []
    url = f"/api/admin/orders?screening_id={screening}&limit=3"
    while True:
        r = await client.get(url, headers=staff.headers)
        page = r.json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        if not page.get("next_cursor"):
            break
        url = f"/api/admin/orders?screening_id={screening}&limit=3&cursor={page['next_cursor']}"
    assert seen == on_screening

    r = await client.get(f"/api/admin/orders?screening_id={screening}&q=zee", headers=staff.headers)
    (item,) = r.json()["items"]
    assert item["buyer"]["email"] == "zoe.buyer@example.com"
    assert (item["seats"], item["holder_names"], item["channel"]) == (["A1", "A2"], [ZOE, YAMADA], "web")
    r = await client.get(f"/api/admin/orders?q={counter['tickets'][0]['code']}", headers=staff.headers)
    (sold,) = r.json()["items"]
    assert sold["channel"] == "boxoffice" and sold["sold_by"]["id"] == staff.id and "buyer" not in sold

    customer = await logged_in(rt, client)
    assert (await client.get("/api/admin/orders", headers=customer.headers)).status_code == 403
    for bad in (
        "status=lost",
        "from=yesterday",
        "from=2026-12-07T10:00:00",
        "screening_id=x",
        "q=" + "x" * 201,
    ):
        r = await client.get(f"/api/admin/orders?{bad}", headers=staff.headers)
        assert r.status_code == 422, (bad, r.text)


async def test_bookings_and_door_list_download_as_csv_a_spreadsheet_opens(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Header row, RFC 4180 quoting, UTF-8: names with commas, quotes and 山田 come back
    intact; a name that looks like a formula is defused; every booking is in it, past one page."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 3, starts_in=timedelta(minutes=30), strand_rule=False)
    buyer = await logged_in(rt, client)
    web = await buy(client, buyer, screening, ["A1", "A2"], holder_names=[ZOE, YAMADA])
    staff = await logged_in(rt, client, "staff")
    counter = await _sell_at_counter(client, staff, screening, ["C1"])
    await paid_orders(rt, screening, 3, first_seat=8)

    r = await client.get(
        f"/api/admin/orders?screening_id={screening}&limit=1", headers={**staff.headers, **CSV_ACCEPT}
    )
    rows = parse_csv(r)
    assert 'filename="bookings-screening-' in r.headers["content-disposition"]
    assert len(rows) == 5  # the whole list, not one page
    by_id = {int(row["order_id"]): row for row in rows}
    assert by_id[web["id"]]["holder_names"] == f"{ZOE}; {YAMADA}"
    assert by_id[web["id"]]["seats"] == "A1 A2"
    assert by_id[web["id"]]["total"] == "100000"
    assert by_id[counter["id"]]["holder_names"] == "'" + FORMULA
    assert by_id[counter["id"]]["channel"] == "boxoffice"
    assert '"Zoë ""Zee"" O\'Brien, Jr.; 山田 太郎"' in r.content.decode("utf-8-sig")

    first_code = web["tickets"][0]["code"]
    scan = await client.post(
        f"/api/tickets/{first_code}/check-in", json={"gate": "Door 2, left"}, headers=staff.headers
    )
    assert scan.status_code == 200, scan.text
    r = await client.get(
        f"/api/admin/screenings/{screening}/attendees", headers={**staff.headers, **CSV_ACCEPT}
    )
    door = parse_csv(r)
    assert list(door[0]) == [
        "seat", "area", "category", "holder_name", "buyer_email", "code", "order_id", "channel",
        "checked_in_at", "gate", "checked_in_by",
    ]  # fmt: skip
    assert [row["seat"] for row in door] == ["A1", "A2", "B1", "B2", "B3", "C1"]  # seat order
    assert (door[0]["holder_name"], door[0]["gate"], door[0]["checked_in_by"]) == (
        ZOE,
        "Door 2, left",
        staff.email,
    )
    assert datetime.fromisoformat(door[0]["checked_in_at"]).tzinfo is not None
    assert door[1]["holder_name"] == YAMADA and door[1]["checked_in_at"] == ""
    assert door[-1]["holder_name"] == "'" + FORMULA


async def test_the_door_list_shows_every_live_ticket_with_its_holder_and_check_in(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Seat, holder (the buyer's name when the ticket names nobody), code, and who let them in
    where and when; a refunded ticket is off the list; customers are refused, unknown ids 404."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 3, starts_in=timedelta(minutes=30), strand_rule=False)
    buyer = await logged_in(rt, client)
    web = await buy(client, buyer, screening, ["B2", "B1"], holder_names=["", "Ana"])
    gone = await buy(client, buyer, screening, ["C8"])
    assert (await client.post(f"/api/orders/{gone['id']}/refund", headers=buyer.headers)).status_code == 202
    staff = await logged_in(rt, client, "staff")
    code = next(t["code"] for t in web["tickets"] if t["seat"] == "B1")
    r = await client.post(f"/api/tickets/{code}/check-in", json={"gate": "North"}, headers=staff.headers)
    assert r.status_code == 200, r.text

    r = await client.get(f"/api/admin/screenings/{screening}/attendees", headers=staff.headers)
    assert r.status_code == 200, r.text
    door = r.json()
    assert (door["tickets"], door["checked_in"], door["title"]) == (2, 1, "Test film")
    first, second = door["items"]
    assert (first["seat"], first["holder_name"], first["code"]) == ("B1", "Ana", code)
    assert (first["gate"], first["checked_in_by"]) == ("North", staff.email)
    assert second["seat"] == "B2" and second["holder_name"] == "Test customer"  # the buyer's name
    assert "checked_in_at" not in second

    customer = await logged_in(rt, client)
    r = await client.get(f"/api/admin/screenings/{screening}/attendees", headers=customer.headers)
    assert r.status_code == 403
    r = await client.get("/api/admin/screenings/999999/attendees", headers=staff.headers)
    assert r.status_code == 404


async def test_staff_see_one_order_with_its_payments_refund_and_history(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The order's detail for staff: buyer, the payment that paid it, the refund with who asked,
    and a history in time order: ordered, payment, paid, closed, refund requested."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 3, starts_in=timedelta(minutes=30), strand_rule=False)
    buyer = await logged_in(rt, client)
    web = await buy(client, buyer, screening, ["A3"])
    r = await client.post(f"/api/orders/{web['id']}/refund", headers=buyer.headers)
    assert r.status_code == 202, r.text
    staff = await logged_in(rt, client, "staff")
    r = await client.get(f"/api/admin/orders/{web['id']}", headers=staff.headers)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["booking"]["buyer"]["id"] == buyer.id
    assert detail["order"]["status"] == "refund_pending"
    (payment,) = detail["payments"]
    assert (payment["provider"], payment["status"], payment["amount"]) == ("simulated", "paid", 50000)
    (refund,) = detail["refunds"]
    assert (refund["amount"], refund["reason"], refund["status"]) == (50000, "customer", "pending")
    assert refund["requested_by"]["id"] == buyer.id
    events = [e["event"] for e in detail["history"]]
    assert events[0] == "ordered" and "payment_paid" in events and "paid" in events
    assert events.index("paid") < events.index("refund_requested")
    assert [e["at"] for e in detail["history"]] == sorted(e["at"] for e in detail["history"])

    customer = await logged_in(rt, client)
    assert (await client.get(f"/api/admin/orders/{web['id']}", headers=customer.headers)).status_code == 403
    assert (await client.get("/api/admin/orders/999999", headers=staff.headers)).status_code == 404


async def test_an_organizer_sees_only_its_own_cinemas_bookings_and_reports(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Lists and reports hold only the organizer's cinemas; naming another cinema, screening or
    order is 403, in JSON and CSV alike."""
    own = await make_screening(rt, ["SSSS"], starts_in=timedelta(minutes=30), strand_rule=False)
    other = await make_screening(rt, ["SSSS"], starts_in=timedelta(minutes=30), strand_rule=False)
    mine, theirs = await paid_orders(rt, own, 2), await paid_orders(rt, other, 3)
    async with rt.pool.acquire() as conn:
        cinemas = {
            s: await conn.fetchval(
                "SELECT a.cinema_id FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
                " WHERE s.id = $1",
                s,
            )
            for s in (own, other)
        }
    admin = await logged_in(rt, client, "admin")
    body = {"email": "org@example.com", "password": PASSWORD, "name": "Org", "role": "organizer",
            "cinema_ids": [cinemas[own]]}  # fmt: skip
    r = await client.post("/api/admin/users", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    organizer = await login(client, User(r.json()["id"], "org@example.com", PASSWORD, "organizer"))
    h = organizer.headers

    r = await client.get("/api/admin/orders", headers=h)
    assert [i["id"] for i in r.json()["items"]] == sorted((o.id for o in mine), reverse=True)
    rows = parse_csv(await client.get("/api/admin/orders", headers={**h, **CSV_ACCEPT}))
    assert sorted(int(row["order_id"]) for row in rows) == sorted(o.id for o in mine)
    r = await client.get("/api/admin/reports?group=cinema", headers=h)
    assert [(row["key"], row["sold"]) for row in r.json()["rows"]] == [(str(cinemas[own]), 2)]
    assert (await client.get(f"/api/admin/reports/screenings/{own}", headers=h)).status_code == 200
    assert (await client.get(f"/api/admin/screenings/{own}/attendees", headers=h)).status_code == 200
    for path in (
        f"/api/admin/orders?cinema_id={cinemas[other]}",
        f"/api/admin/orders?screening_id={other}",
        f"/api/admin/orders/{theirs[0].id}",
        f"/api/admin/screenings/{other}/attendees",
        f"/api/admin/reports?cinema_id={cinemas[other]}",
        f"/api/admin/reports/screenings/{other}",
        f"/api/admin/reports/screenings/{other}/seats",
    ):
        for accept in ({}, CSV_ACCEPT):
            r = await client.get(path, headers={**h, **accept})
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
