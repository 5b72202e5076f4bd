"""The back office's accounts: find, view, change roles, disable and enable, organizers' cinemas."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running
from tests.shopping import seat_states
from tests.support import (
    PASSWORD,
    Server,
    User,
    Viewer,
    create_user,
    logged_in,
    login,
    make_screening,
)


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def tokens_of(client: httpx.AsyncClient, user: User) -> dict[str, Any]:
    r = await client.post("/api/auth/login", json={"email": user.email, "password": user.password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def cinema_of(rt: Runtime, screening: int) -> int:
    async with rt.pool.acquire() as conn:
        cinema: int = await conn.fetchval(
            "SELECT a.cinema_id FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id"
            " WHERE s.id = $1",
            screening,
        )
    return cinema


async def test_admin_finds_accounts_by_part_of_the_email_or_name(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """`?q=` matches a part of the email or the name in any case, with `%` taken literally;
    `role` and `disabled` narrow it; one account by id, 404 for none."""
    admin = await logged_in(rt, client, "admin")
    made = []
    for email, name, role in (
        ("rina.kasir@example.com", "Rina Wulandari", "staff"),
        ("budi@example.com", "Budi Santoso", "customer"),
        ("joko@example.com", "Joko 100% Widodo", "staff"),
    ):
        r = await client.post(
            "/api/admin/users",
            json={"email": email, "password": PASSWORD, "name": name, "role": role},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    rina, budi, joko = made

    async def find(**params: str) -> list[int]:
        r = await client.get("/api/admin/users", params=params, headers=admin.headers)
        assert r.status_code == 200, r.text
        return [item["id"] for item in r.json()["items"]]

    assert await find(q="KASIR") == [rina["id"]]
    assert await find(q="santoso") == [budi["id"]]
    assert await find(q="100%") == [joko["id"]]
    assert await find(q="%") == [joko["id"]]
    assert await find(q="example.com", role="staff") == [rina["id"], joko["id"]]
    r = await client.patch(f"/api/admin/users/{budi['id']}", json={"disabled": True}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert await find(disabled="true") == [budi["id"]]
    assert budi["id"] not in await find(disabled="false")

    one = await client.get(f"/api/admin/users/{rina['id']}", headers=admin.headers)
    assert one.status_code == 200
    assert one.json() | {"created_at": None} == rina | {"created_at": None}
    assert (await client.get("/api/admin/users/987654321", headers=admin.headers)).status_code == 404
    for params in ({"disabled": "yes"}, {"q": "x" * 255}):
        r = await client.get("/api/admin/users", params=params, headers=admin.headers)
        assert r.status_code == 422, params


async def test_a_disabled_account_is_locked_out_until_enabled(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Disabling: the access token is 401 at once, the refresh token refreshes no more, a login
    with the right password is 403 `account_disabled` (a wrong one still 401, telling nothing);
    enabling lets the user log in again."""
    admin = await logged_in(rt, client, "admin")
    cashier = await create_user(rt, "staff")
    tokens = await tokens_of(client, cashier)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/api/me", headers=headers)).status_code == 200

    r = await client.patch(f"/api/admin/users/{cashier.id}", json={"disabled": True}, headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["disabled"] is True
    assert (await client.get("/api/me", headers=headers)).status_code == 401
    assert (
        await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401
    right = await client.post("/api/auth/login", json={"email": cashier.email, "password": PASSWORD})
    assert right.status_code == 403
    assert error(right)["code"] == "account_disabled"
    wrong = await client.post("/api/auth/login", json={"email": cashier.email, "password": "wrong password!"})
    assert wrong.status_code == 401
    assert error(wrong)["code"] == "invalid_credentials"

    r = await client.patch(f"/api/admin/users/{cashier.id}", json={"disabled": False}, headers=admin.headers)
    assert r.json()["disabled"] is False
    again = await tokens_of(client, cashier)
    assert (await client.get("/api/me", headers={"Authorization": f"Bearer {again['access_token']}"})).json()[
        "role"
    ] == "staff"


async def test_an_admin_cannot_lock_themselves_out(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Disabling or demoting one's own account is 409, and changes nothing."""
    admin = await logged_in(rt, client, "admin")
    for change in ({"disabled": True}, {"role": "staff"}):
        r = await client.patch(f"/api/admin/users/{admin.id}", json=change, headers=admin.headers)
        assert r.status_code == 409, change
    assert (await client.get("/api/me", headers=admin.headers)).json()["role"] == "admin"


async def test_disabling_releases_the_accounts_live_holds(client: httpx.AsyncClient, rt: Runtime) -> None:
    """The seats a disabled customer held are free again at once, on every screening."""
    admin = await logged_in(rt, client, "admin")
    buyer = await logged_in(rt, client)
    first = await make_screening(rt, ["SSSS"], strand_rule=False)
    second = await make_screening(rt, ["SSSS"], strand_rule=False)
    for screening, seats in ((first, ["A1", "A2"]), (second, ["A3"])):
        r = await client.post(
            "/api/holds", json={"screening_id": screening, "seats": seats}, headers=buyer.headers
        )
        assert r.status_code == 201, r.text
    # A hold made without a client address (as the box office makes them) is released too.
    from seatmap.accounts.auth import decode_access_token

    third = await make_screening(rt, ["SSSS"], strand_rule=False)
    await rt.holds.create(decode_access_token(rt.settings, buyer.token), third, ["A4"])
    assert await seat_states(rt, first) == {"A1": "held", "A2": "held"}
    assert await seat_states(rt, third) == {"A4": "held"}
    r = await client.patch(f"/api/admin/users/{buyer.id}", json={"disabled": True}, headers=admin.headers)
    assert r.status_code == 200
    assert await seat_states(rt, first) == {}
    assert await seat_states(rt, second) == {}
    assert await seat_states(rt, third) == {}


async def test_a_socket_of_a_disabled_user_stops_acting_for_them(server: Server, rt: Runtime) -> None:
    """A socket that authenticated before the account was disabled can hold nothing afterwards."""
    screening = await make_screening(rt, ["SSSS"], strand_rule=False)
    async with httpx.AsyncClient(base_url=server.http) as client:
        admin = await logged_in(rt, client, "admin")
        buyer = await logged_in(rt, client)
        viewer = await Viewer.connect(server, screening)
        await viewer.next("snapshot")
        assert (await viewer.command(type="auth", ref="a", token=buyer.token))["type"] == "result"
        held = await viewer.command(type="hold", ref="h1", seats=["A1"])
        assert held["type"] == "result", held
        released = await viewer.command(type="release", ref="r1", token=held["hold"]["token"])
        assert released["type"] == "result", released
        r = await client.patch(f"/api/admin/users/{buyer.id}", json={"disabled": True}, headers=admin.headers)
        assert r.status_code == 200
        refused = await viewer.command(type="hold", ref="h2", seats=["A2"])
        assert refused["type"] == "error"
        assert refused["code"] == "invalid_token"
        again = await viewer.command(type="hold", ref="h3", seats=["A3"])
        assert again["code"] == "unauthorized"  # the socket forgot whom it acted for
        await viewer.close()
    assert await seat_states(rt, screening) == {}


async def test_an_organizer_gets_its_cinemas_and_new_ones_with_the_next_refresh(
    client: httpx.AsyncClient, rt: Runtime, settings: Settings
) -> None:
    """An organizer is created with cinemas (unknown ones are 422), its token names them, and a
    new assignment revokes its access token while its refresh token brings the new scope."""
    admin = await logged_in(rt, client, "admin")
    one, two = await make_screening(rt, ["SS"]), await make_screening(rt, ["SS"])
    cinema_one, cinema_two = await cinema_of(rt, one), await cinema_of(rt, two)
    body = {"email": "dedi@example.com", "password": PASSWORD, "name": "Dedi Mulyadi", "role": "organizer"}
    bad = await client.post("/api/admin/users", json=body | {"cinema_ids": [987654]}, headers=admin.headers)
    assert bad.status_code == 422
    assert error(bad)["path"] == "$.cinema_ids"
    r = await client.post("/api/admin/users", json=body | {"cinema_ids": [cinema_one]}, headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "organizer"
    organizer = User(r.json()["id"], body["email"], PASSWORD, "organizer")
    tokens = await tokens_of(client, organizer)
    claims = jwt.decode(tokens["access_token"], settings.jwt_secret.reveal(), algorithms=["HS256"])
    assert claims["cinemas"] == [cinema_one]
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    blocks = f"/api/admin/screenings/{two}/blocks"
    assert (await client.get(blocks, headers=headers)).status_code == 403

    r = await client.patch(
        f"/api/admin/users/{organizer.id}",
        json={"cinema_ids": [cinema_one, cinema_two]},
        headers=admin.headers,
    )
    assert r.json()["cinema_ids"] == sorted([cinema_one, cinema_two])
    assert (await client.get(blocks, headers=headers)).status_code == 401
    new = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert new.status_code == 200
    headers = {"Authorization": f"Bearer {new.json()['access_token']}"}
    assert (await client.get(blocks, headers=headers)).status_code == 200

    # As staff the cinemas are kept but give nothing; back as organizer they count again.
    r = await client.patch(f"/api/admin/users/{organizer.id}", json={"role": "staff"}, headers=admin.headers)
    assert r.json()["cinema_ids"] == sorted([cinema_one, cinema_two])
    staff = await tokens_of(client, organizer)
    assert "cinemas" not in jwt.decode(
        staff["access_token"], settings.jwt_secret.reveal(), algorithms=["HS256"]
    )
    headers = {"Authorization": f"Bearer {staff['access_token']}"}
    r = await client.post(blocks, json={"seats": ["A1"]}, headers=headers)
    assert r.status_code == 403


async def test_a_revoked_token_is_refused_at_once_by_a_process_that_trusted_it(
    client: httpx.AsyncClient, rt: Runtime, settings: Settings
) -> None:
    """Another process that accepted the token a moment ago refuses it on the very next request
    after the admin's answer, not a second later."""
    from seatmap.app import create_app

    admin = await logged_in(rt, client, "admin")
    async with running(create_app(settings)) as other, httpx.AsyncClient(base_url=other.http) as there:
        for _ in range(5):
            cashier = await logged_in(rt, client, "staff")
            assert (await there.get("/api/me", headers=cashier.headers)).status_code == 200
            r = await client.patch(
                f"/api/admin/users/{cashier.id}", json={"disabled": True}, headers=admin.headers
            )
            assert r.status_code == 200
            assert (await there.get("/api/me", headers=cashier.headers)).status_code == 401


async def test_an_organizer_sees_the_drafts_of_its_own_cinemas_only(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """/api/me names the organizer's cinemas; a draft screening there is listed and shown to it,
    one elsewhere stays 404 as for the public."""
    admin = await logged_in(rt, client, "admin")
    own = await make_screening(rt, ["SS"], status="draft")
    other = await make_screening(rt, ["SS"], status="draft")
    body = {
        "email": "dedi@example.com",
        "password": PASSWORD,
        "name": "Dedi",
        "role": "organizer",
        "cinema_ids": [await cinema_of(rt, own)],
    }
    r = await client.post("/api/admin/users", json=body, headers=admin.headers)
    organizer = await login(client, User(r.json()["id"], "dedi@example.com", PASSWORD, "organizer"))
    client.cookies.clear()
    me = (await client.get("/api/me", headers=organizer.headers)).json()
    assert me["role"] == "organizer" and me["cinema_ids"] == [await cinema_of(rt, own)]
    assert "cinema_ids" not in (await client.get("/api/me", headers=admin.headers)).json()
    listed = (await client.get("/api/screenings", headers=organizer.headers)).json()["items"]
    assert [s["id"] for s in listed] == [own]
    assert (await client.get(f"/api/screenings/{own}", headers=organizer.headers)).status_code == 200
    assert (await client.get(f"/api/screenings/{other}", headers=organizer.headers)).status_code == 404
    assert (await client.get(f"/api/screenings/{other}", headers=admin.headers)).status_code == 200
    assert (await client.get("/api/screenings")).json()["items"] == []
