"""Holds over REST: all-or-nothing, limits, ownership, lifetimes, GA capacity, real races."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from seatmap.accounts.auth import Principal
from seatmap.live import replies
from seatmap.live.holds import refusal
from seatmap.live.protocol import GASelection
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.redis_cluster import on_every_node
from tests.shopping import race_for_seats
from tests.support import Server, make_screening, quick_users


@pytest.fixture
async def screening(rt: Runtime) -> int:
    # These tests are about hold mechanics; the stranded-seat rule has its own tests (test_seating.py).
    return await make_screening(rt, ["SSSSS_SSSSS"] * 6, ga=[("Floor", 5)], strand_rule=False)


async def seat_map(rt: Runtime, screening: int) -> dict[str, Any]:
    from seatmap.live.inventory import Inventory

    inv = Inventory(rt.redis, rt.pool, rt.settings.redis_prefix, 100, sold=rt.holds.inventory.sold)
    snap = await inv.snapshot(screening)
    return {"seq": snap.seq, "seats": snap.seats, "ga": snap.ga}


async def test_hold_returns_token_and_others_see_seats_held(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """A hold answers 201 with its token and expiry, and the seat map shows the seats held."""
    (alice,) = await quick_users(rt, 1)
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["A1", "A2"]}, headers=alice.headers
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["token"].startswith(f"{screening}.")
    assert body["seats"] == ["A1", "A2"]
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=590) < expires - datetime.now(expires.tzinfo) <= timedelta(seconds=600)
    assert (await seat_map(rt, screening))["seats"] == {"A1": "held", "A2": "held"}


async def test_taken_seats_refused_with_every_lost_seat_named(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Overlapping a hold gets 409 seat_taken naming each lost seat, and holds nothing of the rest."""
    alice, bob = await quick_users(rt, 2)
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["B1", "B2"]}, headers=alice.headers
    )
    assert r.status_code == 201
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["B2", "B3", "B1"]}, headers=bob.headers
    )
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "seat_taken"
    assert sorted(error["seats"]) == ["B1", "B2"]
    assert "B3" not in (await seat_map(rt, screening))["seats"]


@pytest.mark.parametrize(
    ("seats", "status", "code"),
    [
        (["Z9"], 422, "unknown_seats"),
        (["A1", "A1"], 422, "invalid_input"),
        ([f"A{i}" for i in range(1, 11)] + ["B1"], 422, "too_many_seats"),
        ([f"S{i}" for i in range(1000)], 422, "too_many_seats"),
        ([], 422, "invalid_input"),
        ([""], 422, "invalid_input"),
    ],
)
async def test_bad_seat_lists_refused_and_nothing_changes(
    rt: Runtime, client: httpx.AsyncClient, screening: int, seats: list[str], status: int, code: str
) -> None:
    """Unknown, repeated, too many or no seats: a clear 4xx, and the seat map is untouched."""
    (alice,) = await quick_users(rt, 1)
    before = await seat_map(rt, screening)
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": seats}, headers=alice.headers
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert await seat_map(rt, screening) == before


async def test_malformed_and_anonymous_requests(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """No token is 401; broken JSON is 400; a wrong type is 422 with the field path."""
    (alice,) = await quick_users(rt, 1)
    r = await client.post("/api/holds", json={"screening_id": screening, "seats": ["A1"]})
    assert r.status_code == 401
    r = await client.post(
        "/api/holds", content=b"{nope", headers={**alice.headers, "content-type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_json")
    r = await client.post("/api/holds", json={"screening_id": "x", "seats": ["A1"]}, headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["path"] == "$.screening_id"
    r = await client.post("/api/holds", json={"screening_id": 999999, "seats": ["A1"]}, headers=alice.headers)
    assert r.status_code == 404


async def test_one_live_hold_per_user_per_screening(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """A second hold on the same screening is refused (409 hold_limit) until the first is released."""
    (alice,) = await quick_users(rt, 1)
    first = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["C1"]}, headers=alice.headers
    )
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["C2"]}, headers=alice.headers
    )
    assert (r.status_code, r.json()["error"]["code"]) == (409, "hold_limit")
    assert (
        await client.delete(f"/api/holds/{first.json()['token']}", headers=alice.headers)
    ).status_code == 204
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["C2"]}, headers=alice.headers
    )
    assert r.status_code == 201


async def test_someone_elses_token_is_not_found(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Bob cannot see, change, extend or release Alice's hold: 404, and her seats stay hers."""
    alice, bob = await quick_users(rt, 2)
    token = (
        await client.post(
            "/api/holds", json={"screening_id": screening, "seats": ["D1"]}, headers=alice.headers
        )
    ).json()["token"]
    for method, path, body in [
        ("GET", f"/api/holds/{token}", None),
        ("DELETE", f"/api/holds/{token}", None),
        ("POST", f"/api/holds/{token}/extend", None),
        ("POST", f"/api/holds/{token}/seats", {"remove": ["D1"]}),
    ]:
        r = await client.request(method, path, json=body, headers=bob.headers)
        assert r.status_code == 404, (method, path, r.text)
    assert (await seat_map(rt, screening))["seats"] == {"D1": "held"}
    r = await client.get("/api/holds/garbage-token", headers=alice.headers)
    assert r.status_code == 404


async def test_release_frees_seats_for_others(rt: Runtime, client: httpx.AsyncClient, screening: int) -> None:
    """After Alice releases, Bob can hold the same seats."""
    alice, bob = await quick_users(rt, 2)
    token = (
        await client.post(
            "/api/holds", json={"screening_id": screening, "seats": ["E1", "E2"]}, headers=alice.headers
        )
    ).json()["token"]
    assert (await client.delete(f"/api/holds/{token}", headers=alice.headers)).status_code == 204
    assert (await client.delete(f"/api/holds/{token}", headers=alice.headers)).status_code == 404
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["E1", "E2"]}, headers=bob.headers
    )
    assert r.status_code == 201


async def test_add_and_remove_seats_all_or_nothing(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Adding a taken seat changes nothing; a valid add/remove moves exactly those seats."""
    alice, bob = await quick_users(rt, 2)
    await client.post("/api/holds", json={"screening_id": screening, "seats": ["F5"]}, headers=bob.headers)
    token = (
        await client.post(
            "/api/holds", json={"screening_id": screening, "seats": ["F1"]}, headers=alice.headers
        )
    ).json()["token"]
    r = await client.post(f"/api/holds/{token}/seats", json={"add": ["F2", "F5"]}, headers=alice.headers)
    assert (r.status_code, r.json()["error"]["seats"]) == (409, ["F5"])
    assert (await seat_map(rt, screening))["seats"] == {"F1": "held", "F5": "held"}
    r = await client.post(
        f"/api/holds/{token}/seats", json={"add": ["F2", "F3"], "remove": ["F1"]}, headers=alice.headers
    )
    assert r.status_code == 200, r.text
    assert sorted(r.json()["seats"]) == ["F2", "F3"]
    assert (await seat_map(rt, screening))["seats"] == {"F2": "held", "F3": "held", "F5": "held"}
    r = await client.post(f"/api/holds/{token}/seats", json={"remove": ["A1"]}, headers=alice.headers)
    assert r.status_code == 422
    many = [f"A{i}" for i in range(1, 10)]
    r = await client.post(f"/api/holds/{token}/seats", json={"add": many}, headers=alice.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "too_many_seats")
    assert (await seat_map(rt, screening))["seats"] == {"F2": "held", "F3": "held", "F5": "held"}


async def test_extend_is_bounded_by_hold_max(rt: Runtime, settings: Settings, screening: int) -> None:
    """Extending pushes the expiry out, but never past the hold's maximum lifetime."""
    from dataclasses import replace

    from seatmap.app import create_app

    short = replace(settings, hold_ttl=2, hold_max=3)
    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        (alice,) = await quick_users(rt, 1)
        hold = (
            await client.post(
                "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=alice.headers
            )
        ).json()
        cap = datetime.fromisoformat(hold["max_expires_at"])
        assert cap - datetime.fromisoformat(hold["expires_at"]) == timedelta(seconds=1)
        await asyncio.sleep(1.5)
        extended = (await client.post(f"/api/holds/{hold['token']}/extend", headers=alice.headers)).json()
        assert datetime.fromisoformat(extended["expires_at"]) == cap


@pytest.mark.parametrize(
    ("status", "starts_in", "reason"),
    [("cancelled", timedelta(days=1), "cancelled"), ("draft", timedelta(days=1), "draft"),
     ("scheduled", timedelta(minutes=-5), "started")],
)  # fmt: skip
async def test_screenings_not_on_sale_refuse_holds(
    rt: Runtime, client: httpx.AsyncClient, status: str, starts_in: timedelta, reason: str
) -> None:
    """Cancelled, unpublished or already started screenings answer 409 not_on_sale."""
    screening = await make_screening(rt, ["SSSS"], status=status, starts_in=starts_in)
    (alice,) = await quick_users(rt, 1)
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=alice.headers
    )
    assert r.status_code == 409
    assert r.json()["error"] | {"message": ""} == {"code": "not_on_sale", "reason": reason, "message": ""}


async def test_ga_quantity_comes_out_of_capacity(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """GA holds take units from the area; asking for more than remain is 409 sold_out."""
    alice, bob = await quick_users(rt, 2)
    r = await client.post(
        "/api/holds",
        json={"screening_id": screening, "ga": {"area": "Floor", "quantity": 3}},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    assert (await seat_map(rt, screening))["ga"] == {"Floor": 2}
    r = await client.post(
        "/api/holds",
        json={"screening_id": screening, "ga": {"area": "Floor", "quantity": 3}},
        headers=bob.headers,
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "sold_out" and r.json()["error"]["remaining"] == 2
    r = await client.post(
        "/api/holds",
        json={"screening_id": screening, "ga": {"area": "Nope", "quantity": 1}},
        headers=bob.headers,
    )
    assert r.status_code == 422


async def test_200_clients_race_for_overlapping_seats(rt: Runtime, client: httpx.AsyncClient) -> None:
    """200 buyers at once on overlapping seats: one holder per seat, each loser told which seats it lost."""
    screening = await make_screening(rt, ["SSSSSSSSSS"] * 3, strand_rule=False)
    users = await quick_users(rt, 200)
    labels = [f"{row}{n}" for row in "ABC" for n in range(1, 11)]
    responses, holder = await race_for_seats(client, users, screening, labels)
    for i, r in enumerate(responses):
        if r.status_code == 409:
            for seat in r.json()["error"]["seats"]:
                assert seat in holder and holder[seat] != i
    final = await seat_map(rt, screening)
    assert final["seats"] == {seat: "held" for seat in holder}
    assert sum(r.status_code == 201 for r in responses) >= 5


async def test_sell_marks_seats_sold_once(rt: Runtime, server: object, client: httpx.AsyncClient) -> None:
    """Selling a hold's seats shows them sold to everyone, clears the hold, and a repeat changes nothing."""
    from tests.support import Server, Viewer

    assert isinstance(server, Server) and server.runtime is not None
    screening = await make_screening(rt, ["SSSS"], ga=[("Floor", 10)])
    (alice,) = await quick_users(rt, 1)
    viewer = await Viewer.connect(server, screening)
    await viewer.next("snapshot")
    hold = (
        await client.post(
            "/api/holds",
            json={"screening_id": screening, "seats": ["A1", "A2"], "ga": {"area": "Floor", "quantity": 2}},
            headers=alice.headers,
        )
    ).json()
    await viewer.next("delta")
    from seatmap.live.protocol import GASelection

    holds = server.runtime.holds
    seq = await holds.sell(hold["token"], alice.id, ["A1", "A2"], GASelection("Floor", 2), "order-1")
    assert seq > 0
    delta = await viewer.next("delta")
    assert delta["seq"] == seq
    assert {c.get("seat"): c.get("state") for c in delta["changes"] if "seat" in c} == {
        "A1": "sold",
        "A2": "sold",
    }
    assert await holds.sell(hold["token"], alice.id, ["A1", "A2"], GASelection("Floor", 2), "order-1") == 0
    assert (await seat_map(rt, screening)) | {"seq": 0} == {
        "seq": 0, "seats": {"A1": "sold", "A2": "sold"}, "ga": {"Floor": 8}
    }  # fmt: skip
    assert (await client.get(f"/api/holds/{hold['token']}", headers=alice.headers)).status_code == 404
    await viewer.close()


async def test_holds_go_on_after_redis_forgets_the_scripts(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """After SCRIPT FLUSH (or a Redis restart) every call of a pipelined batch still gets its own answer."""
    users = await quick_users(rt, 6)
    await rt.redis.script_flush()
    replies = await asyncio.gather(
        *(
            client.post("/api/holds", json={"screening_id": screening, "seats": [seat]}, headers=u.headers)
            for u, seat in zip(users, ["A1", "A2", "A3", "A3", "B1", "B2"], strict=True)
        )
    )
    codes = sorted(r.status_code for r in replies)
    assert codes == [201] * 5 + [409]
    tokens = {r.json()["token"] for r in replies if r.status_code == 201}
    assert len(tokens) == 5
    snap = await seat_map(rt, screening)
    assert snap["seats"] == {s: "held" for s in ["A1", "A2", "A3", "B1", "B2"]}


@pytest.mark.serial  # CLIENT KILL on every node drops the other tests' connections as well
async def test_holds_go_on_after_redis_drops_the_idle_connections(
    rt: Runtime, server: Server, screening: int
) -> None:
    """Pooled connections killed while idle (a Redis restart, a proxy) are replaced: nobody gets an error.

    Straight through the server's Holds, so that nothing but the pipelined scripts touches
    Redis after the kill (a login check would have replaced the dead connection first).
    """
    assert server.runtime is not None
    holds = server.runtime.holds
    who = [Principal(user_id=u.id, role="customer", jti="x", expires_at=0) for u in await quick_users(rt, 4)]
    await holds.create(who[0], screening, ["A1"])
    killed = await on_every_node(rt.redis, "CLIENT KILL", "TYPE", "normal", "SKIPME", "yes")
    assert sum(map(int, killed)) >= 1
    made = await asyncio.gather(
        *(holds.create(p, screening, [seat]) for p, seat in zip(who[1:], ["B1", "B2", "B3"], strict=True))
    )
    assert [h.seats for h in made] == [["B1"], ["B2"], ["B3"]]
    assert (await seat_map(rt, screening))["seats"] == {s: "held" for s in ["A1", "B1", "B2", "B3"]}


@pytest.mark.parametrize(
    ("reply", "code", "details"),
    [
        (
            replies.Taken(["A1"], ["A2"]),
            "seat_taken",
            {"seats": ["A1", "A2"], "taken": ["A1"], "blocked": ["A2"]},
        ),
        (replies.Taken([], ["A2"]), "seat_taken", {"seats": ["A2"], "taken": [], "blocked": ["A2"]}),
        (replies.Strand("B4"), "would_strand_seat", {"seat": "B4"}),
        (replies.NotOnSale("started"), "not_on_sale", {"reason": "started"}),
        (replies.HoldLimit(["1.x"]), "hold_limit", {"token": "1.x", "screening_id": 1}),
        (replies.UnknownArea("Pit"), "invalid_input", {"path": "$.ga.area"}),
        (replies.SoldOut(3), "sold_out", {"remaining": 3}),
        (replies.TooMany(12, 10), "too_many_seats", {"limit": 10}),
        (replies.NotHeld(["C1"]), "invalid_input", {"path": "$.remove", "seats": ["C1"]}),
        (replies.Expired(), "hold_expired", {}),
        (replies.Gone(), "not_found", {}),
        (replies.AddressLimit(40, 38), "address_hold_limit", {"limit": 40, "held": 38}),
    ],
)
def test_every_refusal_becomes_the_error_clients_switch_on(
    reply: replies.Refusal, code: str, details: dict[str, Any]
) -> None:
    """Each refusal a script can answer reaches REST and the socket as one code with its details."""
    error = refusal(reply)
    assert (error.code, error.details) == (code, details)


async def test_hold_attempts_are_counted_by_outcome(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """seatmap_holds_total counts a created hold, a taken seat, the hold limit and a bad request."""

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("seatmap_holds_total", {"outcome": outcome}) or 0.0

    outcomes = ("created", "taken", "limit", "invalid")
    before = {o: count(o) for o in outcomes}
    alice, bob = await quick_users(rt, 2)
    for who, seats in [(alice, ["E1"]), (bob, ["E1"]), (alice, ["E3"]), (bob, ["Z99"])]:
        await client.post("/api/holds", json={"screening_id": screening, "seats": seats}, headers=who.headers)
    assert {o: count(o) - before[o] for o in outcomes} == {"created": 1, "taken": 1, "limit": 1, "invalid": 1}


async def post_hold(
    client: httpx.AsyncClient, headers: dict[str, str], screening: int, *seats: str
) -> httpx.Response:
    return await client.post(
        "/api/holds", json={"screening_id": screening, "seats": list(seats)}, headers=headers
    )


async def test_one_account_holds_on_at_most_three_screenings_at_once(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The 4th screening held at once gets 429 `account_hold_limit` (limit 3); releasing one frees a slot.

    One account used to hold seats on 16 screenings at once (SEATMAP_HOLDS_PER_ACCOUNT).
    """
    screenings = [await make_screening(rt, ["SSSS"], strand_rule=False) for _ in range(5)]
    (alice,) = await quick_users(rt, 1)
    tokens = []
    for screening in screenings[:3]:
        r = await post_hold(client, alice.headers, screening, "A1")
        assert r.status_code == 201, r.text
        tokens.append(r.json()["token"])
    r = await post_hold(client, alice.headers, screenings[3], "A1")
    assert r.status_code == 429, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["limit"]) == ("account_hold_limit", 3)
    assert (await seat_map(rt, screenings[3]))["seats"] == {}
    assert (await client.delete(f"/api/holds/{tokens[0]}", headers=alice.headers)).status_code == 204
    assert (await post_hold(client, alice.headers, screenings[3], "A1")).status_code == 201
    # Racing itself on two more screenings at once does not get past the cap either.
    (bob,) = await quick_users(rt, 1)
    raced = await asyncio.gather(*(post_hold(client, bob.headers, s, "A2") for s in screenings))
    assert sum(r.status_code == 201 for r in raced) <= 3
    assert {r.status_code for r in raced} <= {201, 429}


async def test_throwaway_accounts_from_one_address_cannot_hoard_a_screening(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """Accounts from one address hold 40 seats of a screening at most (429 `address_hold_limit`), even
    racing; another viewer sees no more; a release frees the room, and adding seats counts too.

    12 throwaway accounts used to hold 120 of 624 seats (SEATMAP_HOLD_SEATS_PER_ADDRESS).
    """
    hall = await make_screening(rt, ["SSSSSSSSSS"] * 8, strand_rule=False)
    users = await quick_users(rt, 8)
    rows = "ABCDEFGH"
    raced = await asyncio.gather(
        *(
            post_hold(client, u.headers, hall, *(f"{rows[i]}{n}" for n in range(1, 11)))
            for i, u in enumerate(users)
        )
    )
    made = [r for r in raced if r.status_code == 201]
    assert len(made) == 4
    for r in raced:
        if r.status_code != 201:
            error = r.json()["error"]
            assert (r.status_code, error["code"], error["limit"]) == (429, "address_hold_limit", 40), r.text
    assert len((await seat_map(rt, hall))["seats"]) == 40
    # A release makes room; adding seats to a hold counts like holding them.
    first, late = (
        made[0].json()["token"],
        [u for u, r in zip(users, raced, strict=True) if r.status_code != 201],
    )
    holder = next(u for u, r in zip(users, raced, strict=True) if r is made[0])
    assert (await client.delete(f"/api/holds/{first}", headers=holder.headers)).status_code == 204
    seats = made[0].json()["seats"]
    assert (await post_hold(client, late[0].headers, hall, *seats[:8])).status_code == 201  # 38
    free_row = rows[users.index(late[1])]  # a row whose hold was refused: all free
    single = await post_hold(client, late[1].headers, hall, f"{free_row}1")  # 39
    assert single.status_code == 201, single.text
    change = f"/api/holds/{single.json()['token']}/seats"
    more = await client.post(change, json={"add": [f"{free_row}2"]}, headers=late[1].headers)
    assert more.status_code == 200, more.text  # 40 of 40
    too_many = await client.post(change, json={"add": [f"{free_row}3"]}, headers=late[1].headers)
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (429, "address_hold_limit")
    assert len((await seat_map(rt, hall))["seats"]) == 40


async def test_an_expired_or_sold_hold_stops_counting_against_its_address(
    rt: Runtime, screening: int
) -> None:
    """The restock of an expired hold and the sale of one take its seats off the address's count."""
    (alice, bob) = await quick_users(rt, 2)
    a, b = (Principal(user_id=u.id, role="customer", jti="x", expires_at=0) for u in (alice, bob))
    inventory = rt.holds.inventory
    counts = inventory.keys(screening).addrs
    expiring = await rt.holds.create(a, screening, ["A1", "A2"], address="10.0.0.9")
    sold = await rt.holds.create(b, screening, ["B1"], GASelection("Floor", 2), address="10.0.0.9")
    assert await rt.redis.hget(counts, "10.0.0.9") == "5"
    await rt.redis.delete(inventory.keys(screening).ttl(expiring.token))  # its deadline passed
    assert isinstance(await inventory.restock(screening, expiring.token), replies.Restocked)
    assert await rt.redis.hget(counts, "10.0.0.9") == "3"
    await rt.holds.sell(sold.token, bob.id, ["B1"], GASelection("Floor", 2), "order-1")
    assert await rt.redis.hget(counts, "10.0.0.9") is None
