"""A hold follows its buyer: GET /api/holds lists the caller's live holds, the 409 names the hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import httpx

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.support import make_screening, quick_users


async def hold(
    client: httpx.AsyncClient, headers: dict[str, str], screening: int, *seats: str
) -> httpx.Response:
    return await client.post(
        "/api/holds", json={"screening_id": screening, "seats": list(seats)}, headers=headers
    )


async def test_the_buyer_lists_their_live_holds_on_every_screening(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """Alice sees her two holds (token, screening, seats, expiry), not Bob's, and not a released one."""
    first, second = [await make_screening(rt, ["SSSS"], strand_rule=False) for _ in range(2)]
    alice, bob = await quick_users(rt, 2)
    a1 = (await hold(client, alice.headers, first, "A1", "A2")).json()
    a2 = (await hold(client, alice.headers, second, "A3")).json()
    assert (await hold(client, bob.headers, second, "A1")).status_code == 201
    r = await client.get("/api/holds", headers=alice.headers)
    assert r.status_code == 200, r.text
    listed = {h["token"]: h for h in r.json()}
    assert listed.keys() == {a1["token"], a2["token"]}
    assert listed[a1["token"]]["screening_id"] == first
    assert listed[a1["token"]]["seats"] == ["A1", "A2"]
    assert listed[a1["token"]]["expires_at"] == a1["expires_at"]
    await client.delete(f"/api/holds/{a1['token']}", headers=alice.headers)
    assert [h["token"] for h in (await client.get("/api/holds", headers=alice.headers)).json()] == [
        a2["token"]
    ]
    assert (await client.get("/api/holds")).status_code == 401


async def test_a_second_device_finds_the_hold_and_extends_it(rt: Runtime, client: httpx.AsyncClient) -> None:
    """Another session of the same buyer (a new login) lists the hold and may extend and change it."""
    screening = await make_screening(rt, ["SSSS"], strand_rule=False)
    (alice,) = await quick_users(rt, 1)
    made = (await hold(client, alice.headers, screening, "A1")).json()
    (found,) = (await client.get("/api/holds", headers=alice.headers)).json()
    r = await client.post(f"/api/holds/{found['token']}/extend", headers=alice.headers)
    assert r.status_code == 200 and r.json()["token"] == made["token"]
    r = await client.post(f"/api/holds/{found['token']}/seats", json={"add": ["A2"]}, headers=alice.headers)
    assert r.json()["seats"] == ["A1", "A2"]


async def test_hold_limit_names_the_callers_hold(rt: Runtime, client: httpx.AsyncClient) -> None:
    """A second hold on the same screening gets 409 hold_limit naming the first: token, seats, expiry."""
    screening = await make_screening(rt, ["SSSS"], strand_rule=False)
    (alice,) = await quick_users(rt, 1)
    made = (await hold(client, alice.headers, screening, "A1")).json()
    r = await hold(client, alice.headers, screening, "A3")
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "hold_limit"
    assert (error["token"], error["screening_id"], error["seats"]) == (made["token"], screening, ["A1"])
    assert datetime.fromisoformat(error["expires_at"]) == datetime.fromisoformat(made["expires_at"])
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "best_available": {"count": 1}}, headers=alice.headers
    )
    assert (r.status_code, r.json()["error"]["token"]) == (409, made["token"])


async def test_holds_are_listed_when_the_account_cap_is_off(rt: Runtime, settings: Settings) -> None:
    """With SEATMAP_HOLDS_PER_ACCOUNT=0 (no cap) the buyer still finds their holds."""
    async with (
        running(replace(settings, holds_per_account=0)) as srv,
        httpx.AsyncClient(base_url=srv.http) as client,
    ):
        screening = await make_screening(rt, ["SSSS"], strand_rule=False)
        (alice,) = await quick_users(rt, 1)
        made = (await hold(client, alice.headers, screening, "A1")).json()
        assert [h["token"] for h in (await client.get("/api/holds", headers=alice.headers)).json()] == [
            made["token"]
        ]
