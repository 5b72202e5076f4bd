"""The reconciler: a seat PostgreSQL has sold never stays free in Redis (issue 13, invariant 5)."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.shopping import buy, seat_states
from tests.support import Server, Viewer, logged_in, make_screening, metric_value


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, reconcile_interval=0.2)


async def _repaired(client: httpx.AsyncClient) -> float:
    return metric_value((await client.get("/metrics")).text, "seatmap_reconciled_seats_total")


async def test_a_sold_seat_shown_free_or_held_by_nobody_is_sold_again_for_every_viewer(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Redis broken by hand (a sold seat gone, another held by a hold that does not exist): within
    the interval viewers get one delta, the next seq, that shows both sold again; it is counted."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    await buy(client, buyer, screening, ["A3", "A4", "A5"])
    viewer = await Viewer.connect(server, screening)
    snapshot = await viewer.next("snapshot")
    assert snapshot["seats"] == {"A3": "sold", "A4": "sold", "A5": "sold"}
    before = await _repaired(client)

    k = rt.holds.inventory.keys(screening)
    await rt.redis.hdel(k.seats, "A3")
    await rt.redis.hset(k.seats, "A4", "h:nobody")

    delta = await viewer.next("delta", within=3.0)
    assert sorted((c["seat"], c["state"]) for c in delta["changes"]) == [("A3", "sold"), ("A4", "sold")]
    assert delta["seq"] == snapshot["seq"] + 1
    assert await seat_states(rt, screening) == {"A3": "sold", "A4": "sold", "A5": "sold"}
    assert await _repaired(client) == before + 2
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["A3"]}, headers=buyer.headers
    )
    assert r.status_code == 409, r.text
    with pytest.raises(TimeoutError):
        await viewer.next("delta", within=0.6)  # a correct map is left alone, round after round
    await viewer.close()
