"""Demo data: what a first start shows, loaded once however often or concurrently it runs."""

from __future__ import annotations

import asyncio
import itertools
import time
import zoneinfo
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from seatmap import demo
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.support import TIMEOUT_FACTOR, create_user

COUNTS = """
SELECT (SELECT count(*) FROM cinemas) AS cinemas, (SELECT count(*) FROM auditoriums) AS halls,
       (SELECT count(*) FROM seats) AS seats, (SELECT count(*) FROM movies) AS movies,
       (SELECT count(*) FROM screenings) AS screenings, (SELECT count(*) FROM screening_prices) AS prices,
       (SELECT count(*) FROM users) AS users
"""


async def counts(rt: Runtime) -> dict[str, int]:
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(COUNTS)
    assert row is not None
    return dict(row)


@pytest.mark.serial  # timed: alone, after the parallel pass
async def test_demo_loads_a_realistic_catalog_fast(rt: Runtime) -> None:
    """A first start gets 2 cities, 3 cinemas, a 600-seat hall, a standing area, a week of shows: in < 2 s."""
    started = time.monotonic()
    await demo.load(rt.pool)
    took = time.monotonic() - started
    print(f"\ndemo data loaded in {took:.2f} s")
    assert took < 2.0 * TIMEOUT_FACTOR, f"{took:.2f} s"
    async with rt.pool.acquire() as conn:
        cinemas = await conn.fetch("SELECT city, timezone FROM cinemas")
        halls = await conn.fetch("SELECT seat_count, ga_capacity, categories FROM auditoriums")
        span = await conn.fetchrow("SELECT min(starts_at) AS first, max(starts_at) AS last FROM screenings")
        kinds = await conn.fetchval("SELECT array_agg(DISTINCT kind) FROM movies")
        front_row = await conn.fetch(
            "SELECT label, accessible, companion FROM seats s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE a.seat_count >= 600 AND s.row_label = 'A' AND (accessible OR companion) ORDER BY s.number"
        )
    assert {c["city"] for c in cinemas} == {"Jakarta", "Bandung"} and len(cinemas) == 3
    assert {c["timezone"] for c in cinemas} == {"Asia/Jakarta"}
    assert max(h["seat_count"] for h in halls) >= 5000  # the arena
    assert sum(h["seat_count"] >= 600 for h in halls) >= 2
    assert any(h["ga_capacity"] >= 300 for h in halls)
    assert sum(150 <= h["seat_count"] <= 300 for h in halls) >= 2
    assert {"standard", "premium", "vip"} <= {c for h in halls for c in h["categories"]}
    assert [(s["accessible"], s["companion"]) for s in front_row] == [
        (True, False),
        (False, True),
        (False, True),
        (True, False),
    ]
    assert span is not None
    now = datetime.now(UTC)
    assert now - timedelta(minutes=1) <= span["first"] and span["last"] < now + timedelta(days=7)
    assert set(kinds) == {"movie", "event"}
    loaded = await counts(rt)
    assert loaded["movies"] >= 6 and loaded["screenings"] >= 100 and loaded["users"] == len(demo.ACCOUNTS)


async def test_demo_loads_once_however_often_it_runs(rt: Runtime) -> None:
    """Run twice, then twice at the same moment: still exactly one copy of everything."""
    await demo.load(rt.pool)
    once = await counts(rt)
    await demo.load(rt.pool)
    await asyncio.gather(demo.load(rt.pool), demo.load(rt.pool))
    assert await counts(rt) == once


async def test_demo_loads_concurrently_into_an_empty_database(rt: Runtime) -> None:
    """Two processes starting at once on a fresh database load one copy, not two (nor an error)."""
    await asyncio.gather(*(demo.load(rt.pool) for _ in range(3)))
    loaded = await counts(rt)
    assert loaded["cinemas"] == 3 and loaded["users"] == len(demo.ACCOUNTS)


async def test_demo_keeps_an_existing_account(rt: Runtime) -> None:
    """A real admin made first with the demo email keeps their password; the catalog still loads."""
    existing = await create_user(rt, "admin", email="admin@seatmap.local")
    await demo.load(rt.pool)
    loaded = await counts(rt)
    assert loaded["cinemas"] == 3 and loaded["users"] == len(demo.ACCOUNTS)
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT id FROM users WHERE email = 'admin@seatmap.local'") == existing.id


async def test_demo_accounts_log_in_and_see_screenings(rt: Runtime, client: httpx.AsyncClient) -> None:
    """The printed demo accounts work as printed, and the public API lists today's shows."""
    await demo.load(rt.pool)
    for role, email, password in demo.ACCOUNTS:
        response = await client.post("/api/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, (role, response.text)
    client.cookies.clear()
    page = (await client.get("/api/screenings", params={"city": "Bandung", "limit": 100})).json()
    assert page["items"] and {s["cinema"]["city"] for s in page["items"]} == {"Bandung"}
    detail = (await client.get(f"/api/screenings/{page['items'][0]['id']}")).json()
    assert detail["layout"]["seats"] and set(detail["prices"]) >= set(detail["layout"]["categories"])


def test_schedule_never_overlaps_within_a_hall() -> None:
    """Each hall's week is back to back with cleaning time, never overlapping, from 10:00 to the last show."""
    halls = [
        (1, ["standard", "premium"], "movies"),
        (2, ["vip"], "movies"),
        (3, ["standard", "vip"], "events"),
    ]
    movies = [(10, "movie", 166), (11, "movie", 96), (12, "movie", 119), (13, "event", 150)]
    zone = zoneinfo.ZoneInfo(demo.TIMEZONE)
    today = date(2030, 1, 7)  # a Monday
    midday = datetime(2030, 1, 7, 12, 0, tzinfo=zone)
    shows = demo.schedule(halls, movies, today, midday)
    by_hall: defaultdict[int, list[demo.Show]] = defaultdict(list)
    for show in shows:
        by_hall[show.hall].append(show)
        assert midday <= show.starts_at < datetime(2030, 1, 14, tzinfo=zone)
    for hall_shows in by_hall.values():
        ordered = sorted(hall_shows, key=lambda s: s.starts_at)
        for before, after in itertools.pairwise(ordered):
            assert before.ends_at <= after.starts_at
    assert {s.movie for s in by_hall[3]} == {13} and len(by_hall[3]) == 7
    assert {s.movie for s in by_hall[1]} == {10, 11, 12}
    assert len(by_hall[1]) >= 7 * 4
    friday = [s for s in by_hall[1] if s.starts_at.date() == date(2030, 1, 11)]
    assert friday[0].prices == {"standard": 60_000, "premium": 90_000}
    monday = [s for s in by_hall[2] if s.starts_at.date() == today]
    assert monday[0].prices == {"vip": 120_000}


def test_part_sold_shows_sell_the_best_seats_first() -> None:
    """A nearly sold-out show leaves the edges free, not the middle; the share is the share sold."""
    from seatmap.catalog.layouts import normalise
    from seatmap.demo import PREMIERE, sold_first

    layout = normalise(PREMIERE, "$")
    sold = sold_first(layout, 0.96)
    assert len(sold) == round(len(layout.seats) * 0.96)
    middle = next(s.label for s in layout.seats if s.y == 15 and s.x == 13)
    assert middle in sold
    assert "A1" not in sold  # the front corner is what is left
    assert sold_first(layout, 0.25)[0] == sold[0]


async def test_a_first_run_has_part_sold_shows_one_nearly_sold_out(rt: Runtime) -> None:
    """The next three shows of the biggest cinema hall open 96 %, 55 % and 25 % sold on the live map."""
    await demo.load(rt.pool)
    async with rt.pool.acquire() as conn:
        shows = await conn.fetch(
            "SELECT s.id, a.seat_count FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE a.name = 'Premiere 1' AND s.starts_at > now() ORDER BY s.starts_at LIMIT 3"
        )
    shares = []
    for show in shows:
        snapshot = await rt.holds.inventory.snapshot(show["id"])
        sold = sum(state == "sold" for state in snapshot.seats.values())
        shares.append(round(sold / show["seat_count"], 2))
    assert shares == [0.96, 0.55, 0.25][: len(shows)] and shows


async def test_a_first_run_has_seats_held_by_demo_buyers_made_once(rt: Runtime, settings: Settings) -> None:
    """On start, demo buyers hold free seats (never sold ones) on the biggest hall's next shows
    and on the arena; starting again while those holds live makes no more."""
    await demo.load(rt.pool)
    assert await demo.hold_some(settings) == 16  # four buyers on three shows and the arena
    async with rt.pool.acquire() as conn:
        shows = await conn.fetch(
            "SELECT DISTINCT ON (a.id, s.starts_at) s.id, a.name FROM screenings s"
            " JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE a.name IN ('Premiere 1', 'Arena Braga') AND s.starts_at > now()"
            " ORDER BY s.starts_at, a.id"
        )
    premiere = [s["id"] for s in shows if s["name"] == "Premiere 1"][:3]
    arena = [s["id"] for s in shows if s["name"] == "Arena Braga"][:1]

    async def counts(screening: int) -> tuple[int, int]:
        seats = (await rt.holds.inventory.snapshot(screening)).seats
        return sum(v == "held" for v in seats.values()), sum(v == "sold" for v in seats.values())

    before = {show: await counts(show) for show in premiere + arena}
    # 4 + 2 + 3 + 2 seats per Premiere show, 6 + 4 + 8 + 2 on the arena; the sold stay sold.
    assert [before[s] for s in premiere] == [(11, 599), (11, 343), (11, 156)]
    assert [before[s] for s in arena] == [(20, 0)]
    assert await demo.hold_some(settings) == 0
    assert {show: await counts(show) for show in premiere + arena} == before
