"""Reports: what a screening, a day, a cinema and a film sold, held, blocked and refunded, by
channel and category, as JSON and CSV; and each seat's history from what the system records."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from seatmap.errors import InvalidInput
from seatmap.runtime import Runtime
from seatmap.sales.reports import ScreeningFacts, TicketSum, report_range, summarize
from seatmap.settings import Settings
from tests.refunding import paid_orders
from tests.shopping import buy, hold
from tests.support import Server, logged_in, make_screening

JAKARTA = ZoneInfo("Asia/Jakarta")
CSV_ACCEPT = {"Accept": "text/csv"}


def _facts(id: int, day: date, cinema: int = 1, movie: int = 1, **kw: Any) -> ScreeningFacts:
    fields: dict[str, Any] = {"title": f"Film {movie}", "cinema": f"Cinema {cinema}", "currency": "IDR",
                              "capacity": 10, "blocked": 0, **kw}  # fmt: skip
    return ScreeningFacts(id=id, movie_id=movie, cinema_id=cinema, day=day, **fields)


def test_summarize_sums_screenings_into_days_cinemas_and_films_per_currency() -> None:
    """Pure: tickets count once in their group and in their channel and category; refunds come off
    net; occupancy is of sellable seats; a group spanning currencies is a row per currency."""
    d1, d2 = date(2026, 12, 7), date(2026, 12, 8)
    screenings = [
        _facts(1, d1, blocked=2, held=1),
        _facts(2, d1, cinema=2, movie=2),
        _facts(3, d2, currency="USD"),
    ]
    tickets = [
        TicketSum(1, "web", "standard", True, 3, 150),
        TicketSum(1, "web", "standard", False, 1, 50),
        TicketSum(1, "boxoffice", "vip", True, 1, 90),
        TicketSum(2, "web", "standard", True, 5, 250),
        TicketSum(3, "web", "standard", True, 2, 2000),
        TicketSum(99, "web", "standard", True, 7, 700),  # not one of these screenings
    ]
    (first,) = summarize(screenings[:1], tickets, "screening")
    assert (first.capacity, first.blocked, first.sellable, first.sold, first.held) == (10, 2, 8, 4, 1)
    assert (first.gross, first.refunds, first.net, first.refunded, first.occupancy) == (290, 50, 240, 1, 50.0)
    assert first.by_channel["web"].net == 150 and first.by_channel["boxoffice"].gross == 90
    assert first.by_category["standard"].refunds == 50 and first.by_category["vip"].sold == 1

    by_day = summarize(screenings, tickets, "day")
    assert [(r.key, r.currency, r.screenings, r.sold) for r in by_day] == [
        ("2026-12-07", "IDR", 2, 9),
        ("2026-12-08", "USD", 1, 2),
    ]
    assert by_day[0].occupancy == round(100 * 9 / 18, 1)
    assert by_day[1].currency_exponent == 2
    by_cinema = summarize(screenings, tickets, "cinema")
    assert [(r.key, r.currency, r.gross) for r in by_cinema] == [
        ("1", "IDR", 290),
        ("1", "USD", 2000),
        ("2", "IDR", 250),
    ]
    assert summarize([], tickets, "movie") == []
    (empty,) = summarize([_facts(4, d1, capacity=0)], [], "movie")
    assert (empty.occupancy, empty.gross) == (0.0, 0)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, (date(2026, 11, 7), date(2027, 1, 6))),
        ({"from": "2026-12-01"}, (date(2026, 12, 1), date(2027, 1, 30))),
        ({"from": "2026-12-01", "to": "2026-12-01"}, (date(2026, 12, 1), date(2026, 12, 1))),
        ({"to": "2026-12-10"}, (date(2026, 10, 11), date(2026, 12, 10))),
        ({"to": "2000-01-01"}, (date(1999, 11, 2), date(2000, 1, 1))),
        ({"from": "2026-12-02", "to": "2026-12-01"}, None),
        ({"from": "2025-01-01", "to": "2026-12-01"}, None),
        ({"from": "07/12/2026"}, None),
        ({"from": "2026-12-07T10:00"}, None),
    ],
)
def test_report_range_defaults_and_bounds(query: dict[str, str], expected: tuple[date, date] | None) -> None:
    """Pure: the 30 days either side of today by default; `to` before `from`, a span over a year,
    or anything but YYYY-MM-DD is refused."""
    today = date(2026, 12, 7)
    if expected is None:
        with pytest.raises(InvalidInput):
            report_range(query, today)
    else:
        assert report_range(query, today) == expected


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Refunds until a minute before the start, check-in two hours before it (one screening, both)."""
    return replace(settings, refund_deadline=60, checkin_opens_before=7200)


async def _cinema_of(rt: Runtime, screening: int) -> int:
    async with rt.pool.acquire() as conn:
        cinema: int = await conn.fetchval(
            "SELECT a.cinema_id FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE s.id = $1",
            screening,
        )
    return cinema


async def test_a_screening_report_counts_sold_held_blocked_and_money_by_channel_and_category(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Two web tickets (premium, standard), one at the counter, one refunded, one seat blocked and
    two held right now: every figure of the report, in JSON and CSV, and each seat's history."""
    screening = await make_screening(
        rt, ["PPSSSSSS", "SSSSSSSS", "SSSSSSSS"], starts_in=timedelta(minutes=30), strand_rule=False
    )
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "UPDATE screening_prices SET amount = 80000 WHERE screening_id = $1 AND category = 'premium'",
            screening,
        )
    buyer = await logged_in(rt, client)
    web = await buy(client, buyer, screening, ["A1", "A3"])
    refunded = await buy(client, buyer, screening, ["B1"])
    assert (
        await client.post(f"/api/orders/{refunded['id']}/refund", headers=buyer.headers)
    ).status_code == 202
    staff = await logged_in(rt, client, "staff")
    body = {"screening_id": screening, "payment_method": "cash", "seats": ["C1"]}
    assert (await client.post("/api/boxoffice/sales", json=body, headers=staff.headers)).status_code == 201
    admin = await logged_in(rt, client, "admin")
    r = await client.post(
        f"/api/admin/screenings/{screening}/blocks",
        json={"seats": ["C8"], "reason": "broken"},
        headers=admin.headers,
    )
    assert r.status_code in (200, 201), r.text
    await hold(client, await logged_in(rt, client), screening, ["B5", "B6"])
    code = next(t["code"] for t in web["tickets"] if t["seat"] == "A1")
    r = await client.post(f"/api/tickets/{code}/check-in", json={"gate": "Main"}, headers=staff.headers)
    assert r.status_code == 200, r.text

    r = await client.get(f"/api/admin/reports/screenings/{screening}", headers=admin.headers)
    assert r.status_code == 200, r.text
    rep = r.json()["report"]
    assert (rep["capacity"], rep["blocked"], rep["sellable"], rep["sold"], rep["held"]) == (24, 1, 23, 3, 2)
    assert rep["occupancy"] == round(100 * 3 / 23, 1)
    assert (rep["gross"], rep["refunds"], rep["net"], rep["refunded"]) == (230000, 50000, 180000, 1)
    web_sales, box = rep["by_channel"]["web"], rep["by_channel"]["boxoffice"]
    assert (web_sales["sold"], web_sales["gross"], web_sales["refunds"], web_sales["net"]) == (
        2,
        180000,
        50000,
        130000,
    )
    assert (box["sold"], box["gross"], box["net"]) == (1, 50000, 50000)
    assert rep["by_category"]["premium"] == {
        "sold": 1,
        "refunded": 0,
        "gross": 80000,
        "refunds": 0,
        "net": 80000,
    }
    assert rep["by_category"]["standard"]["sold"] == 2 and rep["by_category"]["standard"]["refunds"] == 50000

    r = await client.get(
        f"/api/admin/reports/screenings/{screening}", headers={**admin.headers, **CSV_ACCEPT}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    (row,) = csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline=""))
    assert (row["sold"], row["held"], row["net"], row["boxoffice_gross"]) == ("3", "2", "180000", "50000")

    r = await client.get(f"/api/admin/reports/screenings/{screening}/seats", headers=admin.headers)
    assert r.status_code == 200, r.text
    history = r.json()
    assert history["now"]["B5"] == "held" and history["now"]["C8"] == "blocked" and "B1" not in history["now"]
    recorded = [(e["seat"], e["event"], e.get("by")) for e in history["events"] if e["source"] != "live"]
    assert [e for e in recorded if e[0] == "B1"] == [
        ("B1", "held", buyer.email), ("B1", "sold", buyer.email), ("B1", "refunded", buyer.email)
    ]  # fmt: skip
    assert ("A1", "checked_in", staff.email) in recorded and ("C1", "sold", staff.email) in recorded
    assert ("C8", "blocked", admin.email) in recorded
    live = [(e["seat"], e["event"]) for e in history["events"] if e["source"] == "live"]
    assert ("B5", "held") in live and ("B1", "free") in live  # who held B5 is not recorded
    r = await client.get(
        f"/api/admin/reports/screenings/{screening}/seats?seat=B1", headers={**admin.headers, **CSV_ACCEPT}
    )
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    assert {row["seat"] for row in rows} == {"B1"} and rows[-1]["event"] in ("refunded", "free")

    assert (
        await client.get(f"/api/admin/reports/screenings/{screening}", headers=staff.headers)
    ).status_code == 403
    assert (
        await client.get("/api/admin/reports/screenings/999999", headers=admin.headers)
    ).status_code == 404


async def test_reports_group_by_the_cinemas_day_cinema_and_film(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A screening at 23:30 UTC counts on the next day in Jakarta; cinemas and films are rows of
    their own; `from`/`to` pick screenings by that day; the CSV has the same rows."""
    soon = await make_screening(rt, ["SSSS"], starts_in=timedelta(minutes=30), strand_rule=False)
    late = await make_screening(rt, ["SSSS"], strand_rule=False)
    utc_day = datetime.now(UTC).date() + timedelta(days=5)
    starts = datetime(utc_day.year, utc_day.month, utc_day.day, 23, 30, tzinfo=UTC)
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "UPDATE screenings SET starts_at = $2, ends_at = $3 WHERE id = $1",
            late,
            starts,
            starts + timedelta(hours=2),
        )
    await paid_orders(rt, late, 3)  # 10000, 10100, 10200
    await paid_orders(rt, soon, 1)
    admin = await logged_in(rt, client, "admin")

    async def rows(query: str) -> list[dict[str, Any]]:
        r = await client.get(f"/api/admin/reports?{query}", headers=admin.headers)
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["rows"]
        return found

    local_day = utc_day + timedelta(days=1)
    assert await rows(f"group=day&from={utc_day}&to={utc_day}") == []
    (day,) = await rows(f"group=day&from={local_day}&to={local_day}")
    assert (day["key"], day["screenings"], day["sold"], day["gross"], day["capacity"]) == (
        local_day.isoformat(), 1, 3, 30300, 4
    )  # fmt: skip
    assert day["occupancy"] == 75.0
    span = f"from={datetime.now(JAKARTA).date()}&to={local_day}"
    by_cinema = await rows(f"group=cinema&{span}")
    assert [(r["key"], r["sold"]) for r in by_cinema] == sorted(
        [(str(await _cinema_of(rt, soon)), 1), (str(await _cinema_of(rt, late)), 3)],
        key=lambda kv: int(kv[0]),
    )
    assert len(await rows(f"group=movie&{span}")) == 2
    assert [r["sold"] for r in await rows(f"group=day&{span}&cinema_id={await _cinema_of(rt, late)}")] == [3]

    r = await client.get(f"/api/admin/reports?group=cinema&{span}", headers={**admin.headers, **CSV_ACCEPT})
    assert 'filename="report-cinema-' in r.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    assert table[0][:4] == ["key", "label", "currency", "screenings"] and len(table) == 3

    for bad in ("group=week", "from=tomorrow", f"from={local_day}&to={utc_day}"):
        assert (await client.get(f"/api/admin/reports?{bad}", headers=admin.headers)).status_code == 422
    staff = await logged_in(rt, client, "staff")
    assert (await client.get("/api/admin/reports", headers=staff.headers)).status_code == 403
