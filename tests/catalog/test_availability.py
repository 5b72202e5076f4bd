"""Availability: listings and the screening detail say available, few_left or sold_out, live."""

from __future__ import annotations

import httpx
import pytest

from seatmap.catalog.availability import availability
from seatmap.runtime import Runtime
from tests.refunding import paid_orders
from tests.shopping import hold
from tests.support import Server, make_screening, quick_users


@pytest.mark.parametrize(
    ("sellable", "free", "expected"),
    [
        (48, 48, "available"),
        (48, 10, "available"),  # seed 001: 38 of 48 taken
        (48, 5, "available"),  # 43 taken, under 90%
        (48, 4, "few_left"),  # 44 taken: the alert's threshold
        (48, 1, "few_left"),
        (48, 0, "sold_out"),
        (10, 1, "few_left"),
        (1, 1, "available"),
        (0, 0, "sold_out"),  # everything blocked
        (10, -1, "sold_out"),
    ],
)
def test_availability_words(sellable: int, free: int, expected: str) -> None:
    """few_left from 90% taken of what can be sold, sold_out when nothing is free."""
    assert availability(sellable, free, 0.9) == expected


async def _listed(client: httpx.AsyncClient, screening: int) -> str:
    r = await client.get("/api/screenings", params={"limit": 100})
    assert r.status_code == 200, r.text
    (found,) = [s for s in r.json()["items"] if s["id"] == screening]
    word: str = found["availability"]
    return word


async def test_listing_and_detail_follow_holds_sales_and_blocks(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """A 10-seat screening: free is available; 9 held is few_left; all 10 held is sold_out (a
    sold-out event no longer reads as merely scheduled; the detail says so too); released,
    available again."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyers = await quick_users(rt, 2)
    assert await _listed(client, screening) == "available"
    held = await hold(client, buyers[0], screening, [f"A{n}" for n in range(1, 10)])
    assert await _listed(client, screening) == "few_left"
    last = await hold(client, buyers[1], screening, ["A10"])
    assert await _listed(client, screening) == "sold_out"
    detail = (await client.get(f"/api/screenings/{screening}")).json()
    assert (detail["availability"], detail["status"]) == ("sold_out", "scheduled")
    for user, token in ((buyers[0], held["token"]), (buyers[1], last["token"])):
        assert (await client.delete(f"/api/holds/{token}", headers=user.headers)).status_code == 204
    assert await _listed(client, screening) == "available"


async def test_blocked_seats_are_not_sellable_and_a_screening_redis_lost_reads_from_postgres(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """20 seats, 2 blocked: 16 sold is available, 17 (of 18 sellable) few_left, whether the live
    map is loaded or was lost (then the sold tickets are all that is taken)."""
    screening = await make_screening(rt, ["S" * 10] * 2, strand_rule=False)
    (admin,) = await quick_users(rt, 1, "admin")
    r = await client.post(
        f"/api/admin/screenings/{screening}/blocks", json={"seats": ["B9", "B10"]}, headers=admin.headers
    )
    assert r.status_code in (200, 201), r.text
    await paid_orders(rt, screening, 16)  # tickets written straight to PostgreSQL
    await rt.redis.delete(rt.holds.inventory.keys(screening).meta)  # as if Redis lost the screening
    assert await _listed(client, screening) == "available"
    await paid_orders(rt, screening, 1, first_seat=16)
    await rt.redis.delete(rt.holds.inventory.keys(screening).meta)
    assert await _listed(client, screening) == "few_left"  # from PostgreSQL: 17 sold of 18 sellable
    assert (await client.get(f"/api/screenings/{screening}")).json()["availability"] == "few_left"  # reloaded
    assert await _listed(client, screening) == "few_left"  # and now from Redis


async def test_ga_units_count_toward_availability(
    rt: Runtime, server: Server, client: httpx.AsyncClient
) -> None:
    """A hall of 2 seats and 8 standing places: holding all the standing places and one seat is
    few_left, and the last seat makes it sold_out."""
    screening = await make_screening(rt, ["SS"], ga=[("Floor", 8)], strand_rule=False)
    buyers = await quick_users(rt, 2)
    await hold(client, buyers[0], screening, ["A1"], ga={"area": "Floor", "quantity": 8})
    assert await _listed(client, screening) == "few_left"
    await hold(client, buyers[1], screening, ["A2"])
    assert await _listed(client, screening) == "sold_out"
