"""Seat suggestions: the pure walk on plans, then over REST, where they must match best-available."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import httpx
import pytest

from seatmap.catalog.layouts import LayoutSpec, normalise
from seatmap.live.inventory import Inventory
from seatmap.live.seats import Place, Plan, best_blocks, plan, ranked_blocks
from seatmap.live.suggestions import suggest
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.support import make_screening, quick_users

HALL = ["SSSSS_SSSSSSSSSS_SSSSS"] * 15  # 300 seats, two aisles


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every buyer here comes from 127.0.0.1: the per-address cap on held seats is not under test."""
    return replace(settings, hold_seats_per_address=0)


def rows_plan(*rows: str) -> Plan:
    layout = normalise(LayoutSpec(rows=list(rows)))
    return plan(Place(s.label, s.row, s.x, s.y, s.category, s.accessible, s.companion) for s in layout.seats)


@pytest.mark.parametrize(
    ("rows", "taken", "count", "rule", "expected"),
    [
        # An empty row of 6: the centre pair.
        (["SSSSSS"], [], 2, True, [("A3", "A4")]),
        # A1 taken: the centre pair would leave A2 alone; A2+A3 is the next best.
        (["SSSSSS"], ["A1"], 2, True, [("A2", "A3")]),
        # A1, A6 taken: of the run A2..A5, the middle pair strands both ends; the walk skips it.
        (["SSSSSS"], ["A1", "A6"], 2, True, [("A2", "A3")]),
        # The same with the rule off (or stepped aside): the best-scored block, the middle.
        (["SSSSSS"], ["A1", "A6"], 2, False, [("A3", "A4")]),
        # Two of three free must leave one: unavoidable, so allowed.
        (["SSS"], [], 2, True, [("A1", "A2")]),
        # Nothing together any more.
        (["SS_SS"], ["A1", "A4"], 2, True, []),
        # Wheelchair and companion places are never suggested to an ordinary request.
        (["WCSSCW"], [], 2, True, [("A3", "A4")]),
    ],
)
def test_the_walk_takes_the_first_ranked_block_the_script_would_accept(
    rows: list[str], taken: list[str], count: int, rule: bool, expected: list[tuple[str, ...]]
) -> None:
    """The suggestion is the first ranked block that is free and strands no seat."""
    p = rows_plan(*rows)
    ranked = ranked_blocks(p, count)
    assert suggest(p, dict.fromkeys(taken, "held"), ranked, strand_rule=rule) == expected


def test_the_walk_agrees_with_the_reference_on_random_maps() -> None:
    """On random half-taken halls the walk picks what `best_blocks` (the reference) ranks first."""
    p = rows_plan(*HALL)
    labels = [place.label for segment in p.segments for place in segment]
    rng = random.Random(5)
    for _ in range(60):
        taken = dict.fromkeys(rng.sample(labels, rng.randint(0, 250)), "sold")
        count = rng.randint(1, 6)
        walked = suggest(p, taken, ranked_blocks(p, count), strand_rule=True, limit=3)
        assert walked == best_blocks(p, taken, count, limit=3), (sorted(taken), count)


async def suggestion(client: httpx.AsyncClient, screening: int, **query: Any) -> httpx.Response:
    return await client.get(f"/api/screenings/{screening}/suggestion", params=query)


async def best(
    client: httpx.AsyncClient, headers: dict[str, str], screening: int, **ask: Any
) -> httpx.Response:
    return await client.post(
        "/api/holds", json={"screening_id": screening, "best_available": ask}, headers=headers
    )


async def test_the_suggestion_is_what_best_available_then_holds(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """Over a filling hall, each suggestion (asked without logging in) is exactly the seats the
    next best-available hold gets; asking changes nothing on the map."""
    screening = await make_screening(rt, HALL)
    inventory = Inventory(rt.redis, rt.pool, rt.settings.redis_prefix, 100, sold=rt.holds.inventory.sold)
    rng = random.Random(3)
    suggested = 0
    for user in await quick_users(rt, 40):
        count = rng.randint(1, 6)
        seq = (await inventory.snapshot(screening)).seq
        r = await suggestion(client, screening, count=count, limit=2)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["screening_id"], body["count"]) == (screening, count), body
        assert (await inventory.snapshot(screening)).seq == seq, "a suggestion changed the map"
        held = await best(client, user.headers, screening, count=count)
        if body["blocks"]:
            assert held.status_code == 201, held.text
            assert held.json()["seats"] == body["blocks"][0], (count, body)
            suggested += 1
        else:
            assert held.status_code == 409, held.text
            assert held.json()["error"]["largest"] == body["largest"], held.text
    assert suggested >= 30


async def test_the_suggestion_leaves_no_seat_alone(rt: Runtime, client: httpx.AsyncClient) -> None:
    """With A1 sold, the centre pair would leave A2 alone: A2+A3 are suggested, and held."""
    screening = await make_screening(rt, ["SSSSSS"])
    alice, bob = await quick_users(rt, 2)
    first = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=alice.headers
    )
    assert first.status_code == 201, first.text
    r = await suggestion(client, screening, count=2)
    assert r.json()["blocks"] == [["A2", "A3"]], r.text
    held = await best(client, bob.headers, screening, count=2)
    assert held.json()["seats"] == ["A2", "A3"], held.text


async def test_accessible_category_and_nothing_left(rt: Runtime, client: httpx.AsyncClient) -> None:
    """Accessible and category requests are suggested as best-available holds them; when no block
    is left, no block is suggested and `largest` is the one the refusal names."""
    screening = await make_screening(rt, ["WCSSSSSSCW", "PPPPSSSSSS", "SS_SS_SS_SS"])
    alice, bob, carol = await quick_users(rt, 3)
    for user, ask in ((alice, {"count": 2, "accessible": True}), (bob, {"count": 3, "category": "premium"})):
        query = {k: str(v).lower() for k, v in ask.items()}
        r = await suggestion(client, screening, **query)
        assert r.status_code == 200, r.text
        held = await best(client, user.headers, screening, **ask)
        assert held.status_code == 201, held.text
        assert r.json()["blocks"] == [held.json()["seats"]], (ask, r.json())
    r = await suggestion(client, screening, count=3, category="premium")
    assert (r.json()["blocks"], r.json()["largest"]) == ([], 1)
    refused = await best(client, carol.headers, screening, count=3, category="premium")
    assert refused.status_code == 409
    assert refused.json()["error"]["largest"] == r.json()["largest"]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({}, "$"),
        ({"count": "0"}, "$.count"),
        ({"count": "two"}, "$.count"),
        ({"count": "11"}, "$.count"),  # more than one hold may have
        ({"count": "2", "category": "gold"}, "$.category"),
        ({"count": "2", "limit": "50"}, "$.limit"),
        ({"count": "2", "seats": "A1"}, "$"),
    ],
)
async def test_bad_questions_are_refused(
    rt: Runtime, client: httpx.AsyncClient, query: dict[str, str], path: str
) -> None:
    """A missing or impossible count, an unknown category or parameter: 422 naming the field."""
    screening = await make_screening(rt, HALL)
    r = await suggestion(client, screening, **query)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input"
    assert r.json()["error"]["path"].startswith(path), r.json()


async def test_an_unknown_screening_is_not_found(client: httpx.AsyncClient) -> None:
    """Asking about a screening that does not exist: 404."""
    r = await suggestion(client, 999_999, count=2)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
