"""The catalog REST API: cinemas, auditoriums, movies, screenings; public reads, admin writes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from seatmap.accounts.auth import Role
from seatmap.runtime import Runtime
from tests.support import User, logged_in

Json = dict[str, Any]
HALL = ["WCSS_SSSS", "SSSS_SSSS", "PPPP_PPPP"]


async def bearer(rt: Runtime, client: httpx.AsyncClient, role: Role) -> User:
    """A logged-in user who sends the token as a header; the client itself stays anonymous
    (login also sets session cookies, which would make every later request that user's)."""
    user = await logged_in(rt, client, role)
    client.cookies.clear()
    return user


@pytest.fixture
async def admin(rt: Runtime, client: httpx.AsyncClient) -> User:
    return await bearer(rt, client, "admin")


class Catalog:
    """Admin calls that must succeed, to set the scene of a test."""

    def __init__(self, client: httpx.AsyncClient, admin: User) -> None:
        self.client = client
        self.admin = admin

    async def post(self, path: str, body: Json) -> Json:
        response = await self.client.post(path, json=body, headers=self.admin.headers)
        assert response.status_code == 201, response.text
        result: Json = response.json()
        return result

    async def cinema(
        self, city: str = "Jakarta", timezone: str = "Asia/Jakarta", name: str = "Thamrin"
    ) -> Json:
        return await self.post("/api/admin/cinemas", {"name": name, "city": city, "timezone": timezone})

    async def hall(self, cinema: Json, rows: list[str] = HALL, name: str = "Studio 1", **layout: Any) -> Json:
        body = {"name": name, "layout": {"rows": rows, **layout}}
        return await self.post(f"/api/admin/cinemas/{cinema['id']}/auditoriums", body)

    async def movie(self, title: str = "Agak Laen", minutes: int = 120) -> Json:
        return await self.post(
            "/api/admin/movies", {"title": title, "duration_minutes": minutes, "rating": "13+"}
        )

    async def screening(self, hall: Json, movie: Json, starts_at: str, **extra: Any) -> Json:
        body = {
            "auditorium_id": hall["id"],
            "movie_id": movie["id"],
            "starts_at": starts_at,
            "prices": {"standard": 50_000, "premium": 75_000},
            **extra,
        }
        return await self.post("/api/admin/screenings", body)


@pytest.fixture
def cat(client: httpx.AsyncClient, admin: User) -> Catalog:
    return Catalog(client, admin)


async def ids(client: httpx.AsyncClient, path: str, **params: Any) -> list[int]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# ---- roles ------------------------------------------------------------------------------------

SCREENING_BODY = {
    "auditorium_id": 1,
    "movie_id": 1,
    "starts_at": "2030-01-10T19:00:00+07:00",
    "prices": {"standard": 1},
}
ADMIN_ROUTES: list[tuple[str, str, Json | None]] = [
    ("POST", "/api/admin/cinemas", {"name": "X", "city": "Y", "timezone": "Asia/Jakarta"}),
    ("PUT", "/api/admin/cinemas/1", {"name": "X", "city": "Y", "timezone": "Asia/Jakarta"}),
    ("PATCH", "/api/admin/cinemas/1", {"name": "X"}),
    ("DELETE", "/api/admin/cinemas/1", None),
    ("POST", "/api/admin/cinemas/1/auditoriums", {"name": "X", "layout": {"rows": ["S"]}}),
    ("PUT", "/api/admin/auditoriums/1", {"name": "X", "layout": {"rows": ["S"]}}),
    ("DELETE", "/api/admin/auditoriums/1", None),
    ("POST", "/api/admin/movies", {"title": "X", "duration_minutes": 90}),
    ("PATCH", "/api/admin/movies/1", {"title": "X"}),
    ("DELETE", "/api/admin/movies/1", None),
    ("POST", "/api/admin/screenings", SCREENING_BODY),
    ("PATCH", "/api/admin/screenings/1", {"currency": "USD"}),
    ("DELETE", "/api/admin/screenings/1", None),
]


async def test_every_admin_route_refuses_anonymous_customer_and_staff(
    rt: Runtime, client: httpx.AsyncClient, cat: Catalog
) -> None:
    """Admin routes answer 401 without a token, 403 to customers and staff, and change nothing."""
    cinema = await cat.cinema()
    hall = await cat.hall(cinema)
    movie = await cat.movie()
    screening = await cat.screening(hall, movie, "2030-01-10T10:00:00+07:00")
    assert (cinema["id"], hall["id"], movie["id"], screening["id"]) == (1, 1, 1, 1)
    customer = await bearer(rt, client, "customer")
    staff = await bearer(rt, client, "staff")
    for method, path, body in ADMIN_ROUTES:
        for headers, status in (({}, 401), (customer.headers, 403), (staff.headers, 403)):
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == status, (method, path, response.text)
            assert response.json()["error"]["code"] == ("unauthorized" if status == 401 else "forbidden")
    assert await ids(client, "/api/cinemas") == [1]
    assert (await client.get("/api/cinemas/1")).json()["name"] == "Thamrin"
    assert await ids(client, "/api/movies") == [1]
    assert (await client.get("/api/screenings/1")).json()["currency"] == "IDR"


# ---- cinemas ----------------------------------------------------------------------------------


async def test_cinema_lifecycle(client: httpx.AsyncClient, cat: Catalog, admin: User) -> None:
    """An admin creates, reads, patches, replaces and deletes a cinema; anyone can read it."""
    created = await cat.cinema(name="Braga", city="Bandung")
    assert created == {
        "id": created["id"],
        "name": "Braga",
        "city": "Bandung",
        "timezone": "Asia/Jakarta",
        "address": "",
    }
    path = f"/api/admin/cinemas/{created['id']}"
    patched = await client.patch(path, json={"address": "Jl. Braga 99"}, headers=admin.headers)
    assert patched.status_code == 200
    assert patched.json()["address"] == "Jl. Braga 99" and patched.json()["name"] == "Braga"
    replaced = await client.put(
        path,
        json={"name": "Braga XXI", "city": "Bandung", "timezone": "Asia/Makassar"},
        headers=admin.headers,
    )
    assert replaced.json()["timezone"] == "Asia/Makassar" and replaced.json()["address"] == ""
    assert (await client.get(f"/api/cinemas/{created['id']}")).json() == replaced.json()
    assert (await client.delete(path, headers=admin.headers)).status_code == 204
    missing = await client.get(f"/api/cinemas/{created['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await client.delete(path, headers=admin.headers)).status_code == 404


async def test_unknown_timezone_is_refused(client: httpx.AsyncClient, admin: User) -> None:
    """A cinema needs a real IANA time zone, or its screening days would be wrong."""
    for timezone in ["Mars/Olympus", "UTC+7", "../etc/passwd", ""]:
        response = await client.post(
            "/api/admin/cinemas", json={"name": "X", "city": "Y", "timezone": timezone}, headers=admin.headers
        )
        assert response.status_code == 422, timezone
        assert response.json()["error"]["path"] == "$.timezone"
    assert await ids(client, "/api/cinemas") == []


async def test_cinemas_filter_by_city_and_page(client: httpx.AsyncClient, cat: Catalog) -> None:
    """`?city=` matches regardless of case; pages follow `next_cursor` to the end."""
    jakarta = [(await cat.cinema(city="Jakarta", name=f"J{i}"))["id"] for i in range(3)]
    bandung = (await cat.cinema(city="Bandung", name="B"))["id"]
    assert await ids(client, "/api/cinemas", city="jakarta") == jakarta
    assert await ids(client, "/api/cinemas", city="BANDUNG") == [bandung]
    first = (await client.get("/api/cinemas", params={"limit": 3})).json()
    assert [c["id"] for c in first["items"]] == jakarta
    second = (await client.get("/api/cinemas", params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert [c["id"] for c in second["items"]] == [bandung] and second["next_cursor"] is None
    bad = await client.get("/api/cinemas", params={"cursor": "!!!"})
    assert bad.status_code == 422 and bad.json()["error"]["path"] == "$.cursor"


async def test_cinema_with_auditoriums_cannot_be_deleted(
    client: httpx.AsyncClient, cat: Catalog, admin: User
) -> None:
    """Deleting a cinema that still has halls is a 409 in_use, and the cinema stays."""
    cinema = await cat.cinema()
    await cat.hall(cinema)
    response = await client.delete(f"/api/admin/cinemas/{cinema['id']}", headers=admin.headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "in_use"
    assert (await client.get(f"/api/cinemas/{cinema['id']}")).status_code == 200


# ---- auditoriums ------------------------------------------------------------------------------


async def test_auditorium_has_a_normalised_layout(client: httpx.AsyncClient, cat: Catalog) -> None:
    """A hall made from compact rows is served with every seat labelled, placed and categorised."""
    cinema = await cat.cinema()
    created = await cat.hall(cinema, ga=[{"name": "Standing", "capacity": 40}])
    assert created["seat_count"] == 24 and created["ga_capacity"] == 40
    assert created["categories"] == ["standard", "premium"]
    got = (await client.get(f"/api/auditoriums/{created['id']}")).json()
    assert got == created
    seats = {s["label"]: s for s in got["layout"]["seats"]}
    assert seats["A1"] == {
        "label": "A1",
        "row": "A",
        "number": 1,
        "x": 0,
        "y": 0,
        "category": "standard",
        "accessible": True,
        "companion": False,
    }
    assert seats["A2"]["companion"] is True
    assert (seats["A5"]["x"], seats["C8"]["category"]) == (5, "premium")
    assert (got["layout"]["width"], got["layout"]["height"]) == (9, 3)
    assert got["layout"]["ga"] == [{"name": "Standing", "capacity": 40, "category": "standard"}]
    assert got["source"] == {
        "rows": HALL,
        "ga": [{"name": "Standing", "capacity": 40, "category": "standard"}],
    }
    listed = (await client.get(f"/api/cinemas/{cinema['id']}/auditoriums")).json()
    assert listed["items"] == [{k: v for k, v in created.items() if k not in ("layout", "source")}]
    assert (await client.get("/api/cinemas/999/auditoriums")).status_code == 404


async def test_bad_layout_is_refused_with_its_path(
    rt: Runtime, client: httpx.AsyncClient, cat: Catalog, admin: User
) -> None:
    """A layout with an unknown character is a 422 naming the row and character; nothing is stored."""
    cinema = await cat.cinema()
    body = {"name": "Studio 9", "layout": {"rows": ["SSS", "SXS"]}}
    response = await client.post(
        f"/api/admin/cinemas/{cinema['id']}/auditoriums", json=body, headers=admin.headers
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["path"] == "$.layout.rows[1]" and "'X'" in error["message"]
    body = {"name": "Studio 9", "layout": {"rows": ["S"], "ga": [{"name": "Floor", "capacity": 0}]}}
    response = await client.post(
        f"/api/admin/cinemas/{cinema['id']}/auditoriums", json=body, headers=admin.headers
    )
    assert response.status_code == 422 and response.json()["error"]["path"] == "$.layout.ga[0].capacity"
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM auditoriums") == 0
        assert await conn.fetchval("SELECT count(*) FROM seats") == 0


async def test_auditorium_names_are_unique_per_cinema(
    client: httpx.AsyncClient, cat: Catalog, admin: User
) -> None:
    """A second "Studio 1" in the same cinema is a 409; in another cinema it is fine."""
    first, second = await cat.cinema(name="One"), await cat.cinema(name="Two")
    await cat.hall(first)
    again = await client.post(
        f"/api/admin/cinemas/{first['id']}/auditoriums",
        json={"name": "Studio 1", "layout": {"rows": ["S"]}},
        headers=admin.headers,
    )
    assert again.status_code == 409
    await cat.hall(second)


async def test_layout_changes_until_a_screening_uses_the_hall(
    rt: Runtime, client: httpx.AsyncClient, cat: Catalog, admin: User
) -> None:
    """A hall's layout can be replaced until it has screenings; after that only a rename is allowed."""
    hall = await cat.hall(await cat.cinema())
    path = f"/api/admin/auditoriums/{hall['id']}"
    changed = await client.put(
        path, json={"name": "Studio 1", "layout": {"rows": ["SS", "SS"]}}, headers=admin.headers
    )
    assert changed.status_code == 200 and changed.json()["seat_count"] == 4
    async with rt.pool.acquire() as conn:
        labels = await conn.fetchval(
            "SELECT array_agg(label ORDER BY label) FROM seats WHERE auditorium_id = $1", hall["id"]
        )
    assert labels == ["A1", "A2", "B1", "B2"]
    await cat.screening(hall, await cat.movie(), "2030-01-10T10:00:00+07:00", prices={"standard": 1})
    refused = await client.put(
        path, json={"name": "Studio 1", "layout": {"rows": ["SSS"]}}, headers=admin.headers
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "in_use"
    renamed = await client.put(
        path, json={"name": "Studio One", "layout": {"rows": ["SS", "SS"]}}, headers=admin.headers
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Studio One"
    assert renamed.json()["seat_count"] == 4
    deleted = await client.delete(path, headers=admin.headers)
    assert deleted.status_code == 409 and deleted.json()["error"]["code"] == "in_use"


# ---- movies -----------------------------------------------------------------------------------


async def test_movies_search_patch_and_delete(client: httpx.AsyncClient, cat: Catalog, admin: User) -> None:
    """`q` finds any part of a title, in any case, `%` literally; a movie with screenings stays."""
    dune = await cat.movie("Dune: Part Two", 166)
    laen = await cat.movie("Agak Laen", 119)
    percent = await cat.movie("100% Cinta", 95)
    assert await ids(client, "/api/movies", q="LAEN") == [laen["id"]]
    assert await ids(client, "/api/movies", q="%") == [percent["id"]]
    assert await ids(client, "/api/movies") == [dune["id"], laen["id"], percent["id"]]
    patched = await client.patch(
        f"/api/admin/movies/{laen['id']}", json={"rating": "17+"}, headers=admin.headers
    )
    assert patched.json() == {**laen, "rating": "17+"}
    bad = await client.patch(
        f"/api/admin/movies/{laen['id']}", json={"duration_minutes": 0}, headers=admin.headers
    )
    assert bad.status_code == 422 and bad.json()["error"]["path"] == "$.duration_minutes"
    hall = await cat.hall(await cat.cinema())
    await cat.screening(hall, dune, "2030-01-10T10:00:00+07:00")
    busy = await client.delete(f"/api/admin/movies/{dune['id']}", headers=admin.headers)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "in_use"
    assert (await client.delete(f"/api/admin/movies/{laen['id']}", headers=admin.headers)).status_code == 204
    assert (await client.get(f"/api/movies/{laen['id']}")).status_code == 404


# ---- screenings: rules ------------------------------------------------------------------------


async def test_screening_ends_after_the_movie_and_cleaning(cat: Catalog) -> None:
    """By default a 120-minute movie at 19:00 ends at 21:15; times come in the cinema's offset."""
    hall = await cat.hall(await cat.cinema())
    screening = await cat.screening(hall, await cat.movie(minutes=120), "2030-01-10T12:00:00Z")
    assert screening["starts_at"] == "2030-01-10T19:00:00+07:00"
    assert screening["ends_at"] == "2030-01-10T21:15:00+07:00"
    assert screening["prices"] == {"standard": 50_000, "premium": 75_000}
    assert screening["status"] == "scheduled" and screening["currency"] == "IDR"


BAD_SCREENINGS: list[tuple[Json, str, str]] = [
    ({"starts_at": "2030-01-10T19:00:00"}, "$.starts_at", "timezone"),
    ({"prices": {"standard": 50_000}}, "$.prices", "premium"),
    ({"prices": {}}, "$.prices", "standard, premium"),
    ({"prices": {"standard": -1, "premium": 1}}, "$.prices.standard", "from 0"),
    ({"prices": {"standard": 1, "premium": 1, "gold": 1}}, "$.prices.gold", "gold"),
    ({"currency": "idr"}, "$.currency", "regex"),
    ({"currency": "RUPIAH"}, "$.currency", "regex"),
    ({"ends_at": "2030-01-10T18:00:00+07:00"}, "$.ends_at", "after it starts"),
    ({"ends_at": "2030-01-12T19:00:00+07:00"}, "$.ends_at", "at most 24 hours"),
    ({"status": "cancelled"}, "$.status", "cancelled"),
    ({"auditorium_id": 999}, "$.auditorium_id", "auditorium"),
    ({"movie_id": 999}, "$.movie_id", "movie"),
    ({"seats": 5}, "$", "seats"),
]


async def test_bad_screening_is_refused(client: httpx.AsyncClient, cat: Catalog, admin: User) -> None:
    """Naive times, missing or negative prices, bad currencies, unknown references: 422s with a path."""
    hall = await cat.hall(await cat.cinema())
    movie = await cat.movie()
    for change, path, words in BAD_SCREENINGS:
        body = {
            "auditorium_id": hall["id"],
            "movie_id": movie["id"],
            "starts_at": "2030-01-10T19:00:00+07:00",
            "prices": {"standard": 50_000, "premium": 75_000},
            **change,
        }
        response = await client.post("/api/admin/screenings", json=body, headers=admin.headers)
        assert response.status_code == 422, (change, response.text)
        error = response.json()["error"]
        assert error.get("path", "$") == path and words in error["message"], (change, error)
    assert await ids(client, "/api/screenings") == []


async def test_missing_prices_are_named(client: httpx.AsyncClient, cat: Catalog, admin: User) -> None:
    """A 422 for missing prices lists exactly the categories the layout needs and lacks."""
    hall = await cat.hall(await cat.cinema(), rows=["SPV"])
    body = {
        "auditorium_id": hall["id"],
        "movie_id": (await cat.movie())["id"],
        "starts_at": "2030-01-10T19:00:00+07:00",
    }
    response = await client.post(
        "/api/admin/screenings", json={**body, "prices": {"premium": 1}}, headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["missing"] == ["standard", "vip"]


async def test_overlapping_screening_is_a_409(client: httpx.AsyncClient, cat: Catalog, admin: User) -> None:
    """An overlap in one hall is a 409 screening_overlap naming the other; back to back is fine."""
    cinema = await cat.cinema()
    hall, other_hall = await cat.hall(cinema), await cat.hall(cinema, name="Studio 2")
    movie = await cat.movie(minutes=105)  # 19:00 -> 21:00 with cleaning
    first = await cat.screening(hall, movie, "2030-01-10T19:00:00+07:00")
    body = {
        "auditorium_id": hall["id"],
        "movie_id": movie["id"],
        "starts_at": "2030-01-10T20:59:00+07:00",
        "prices": {"standard": 1, "premium": 1},
    }
    response = await client.post("/api/admin/screenings", json=body, headers=admin.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "screening_overlap"
    assert response.json()["error"]["conflicts_with"] == first["id"]
    await cat.screening(hall, movie, "2030-01-10T21:00:00+07:00")
    await cat.screening(other_hall, movie, "2030-01-10T20:00:00+07:00")
    assert len(await ids(client, "/api/screenings")) == 3


async def test_concurrent_overlapping_creations_have_one_winner(
    client: httpx.AsyncClient, cat: Catalog, admin: User
) -> None:
    """Two admins creating overlapping screenings at the same moment: one 201, one 409, one screening."""
    hall = await cat.hall(await cat.cinema())
    movie = await cat.movie()
    for attempt in range(3):
        bodies = [
            {
                "auditorium_id": hall["id"],
                "movie_id": movie["id"],
                "starts_at": f"2030-01-1{attempt}T19:{minute:02d}:00+07:00",
                "prices": {"standard": 1, "premium": 1},
            }
            for minute in (0, 30)
        ]
        responses = await asyncio.gather(
            *(client.post("/api/admin/screenings", json=body, headers=admin.headers) for body in bodies)
        )
        assert sorted(r.status_code for r in responses) == [201, 409]
    assert len(await ids(client, "/api/screenings")) == 3


async def test_patch_screening(client: httpx.AsyncClient, cat: Catalog, admin: User) -> None:
    """Moving a screening keeps its length rule, can't move onto another, and new prices replace the old."""
    hall = await cat.hall(await cat.cinema())
    movie = await cat.movie(minutes=105)
    first = await cat.screening(hall, movie, "2030-01-10T10:00:00+07:00")
    second = await cat.screening(hall, movie, "2030-01-10T14:00:00+07:00")
    path = f"/api/admin/screenings/{second['id']}"
    moved = await client.patch(path, json={"starts_at": "2030-01-10T15:00:00+07:00"}, headers=admin.headers)
    assert moved.status_code == 200
    assert (moved.json()["starts_at"], moved.json()["ends_at"]) == (
        "2030-01-10T15:00:00+07:00",
        "2030-01-10T17:00:00+07:00",
    )
    onto = await client.patch(path, json={"starts_at": "2030-01-10T11:00:00+07:00"}, headers=admin.headers)
    assert onto.status_code == 409 and onto.json()["error"]["conflicts_with"] == first["id"]
    missing = await client.patch(path, json={"prices": {"standard": 1}}, headers=admin.headers)
    assert missing.status_code == 422 and missing.json()["error"]["missing"] == ["premium"]
    repriced = await client.patch(
        path,
        json={"prices": {"standard": 40_000, "premium": 60_000}, "status": "draft"},
        headers=admin.headers,
    )
    assert repriced.json()["prices"] == {"standard": 40_000, "premium": 60_000}
    assert repriced.json()["status"] == "draft"
    assert repriced.json()["starts_at"] == "2030-01-10T15:00:00+07:00"
    unknown = await client.patch(path, json={"auditorium_id": 5}, headers=admin.headers)
    assert unknown.status_code == 422
    assert (
        await client.patch("/api/admin/screenings/999", json={}, headers=admin.headers)
    ).status_code == 404


async def test_delete_screening_and_tickets_block_it(
    rt: Runtime, client: httpx.AsyncClient, cat: Catalog, admin: User
) -> None:
    """A screening with tickets is a 409 has_tickets on delete; one without is gone (404 after)."""
    hall = await cat.hall(await cat.cinema())
    movie = await cat.movie()
    sold = await cat.screening(hall, movie, "2030-01-10T10:00:00+07:00")
    empty = await cat.screening(hall, movie, "2030-01-11T10:00:00+07:00")
    async with rt.pool.acquire() as conn:
        # Stands in for the tickets table of a later migration: same ON DELETE RESTRICT reference.
        await conn.execute(
            "CREATE TABLE tickets_stand_in (screening_id bigint REFERENCES screenings ON DELETE RESTRICT)"
        )
        await conn.execute("INSERT INTO tickets_stand_in VALUES ($1)", sold["id"])
    blocked = await client.delete(f"/api/admin/screenings/{sold['id']}", headers=admin.headers)
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "has_tickets"
    assert (await client.get(f"/api/screenings/{sold['id']}")).status_code == 200
    assert (
        await client.delete(f"/api/admin/screenings/{empty['id']}", headers=admin.headers)
    ).status_code == 204
    assert (await client.get(f"/api/screenings/{empty['id']}")).status_code == 404


# ---- screenings: reading ----------------------------------------------------------------------


async def test_screening_detail_shape(client: httpx.AsyncClient, cat: Catalog) -> None:
    """One screening carries its cinema, hall, movie, layout, prices, and (for now) no taken seats."""
    cinema = await cat.cinema()
    hall = await cat.hall(cinema, ga=[{"name": "Floor", "capacity": 30}])
    movie = await cat.movie()
    screening = await cat.screening(hall, movie, "2030-01-10T19:00:00+07:00")
    detail = (await client.get(f"/api/screenings/{screening['id']}")).json()
    assert detail["id"] == screening["id"]
    assert detail["cinema"] == cinema
    assert detail["movie"] == movie
    assert detail["auditorium"]["id"] == hall["id"] and detail["auditorium"]["seat_count"] == 24
    assert detail["layout"] == hall["layout"]
    assert detail["prices"] == {"standard": 50_000, "premium": 75_000}
    assert detail["seats"] == {}
    assert detail["ga"] == [{"name": "Floor", "category": "standard", "capacity": 30, "remaining": 30}]
    assert {
        k: v
        for k, v in detail.items()
        if k not in ("layout", "seats", "ga", "seq", "holder_names", "refunds_close_at")
    } == screening
    assert (await client.get("/api/screenings/999")).status_code == 404


async def test_drafts_are_for_admins_only(client: httpx.AsyncClient, cat: Catalog, admin: User) -> None:
    """A draft screening is invisible to the public (list and detail) but an admin sees it."""
    hall = await cat.hall(await cat.cinema())
    draft = await cat.screening(hall, await cat.movie(), "2030-01-10T19:00:00+07:00", status="draft")
    assert await ids(client, "/api/screenings") == []
    assert (await client.get(f"/api/screenings/{draft['id']}")).status_code == 404
    listed = await client.get("/api/screenings", headers=admin.headers)
    assert [s["id"] for s in listed.json()["items"]] == [draft["id"]]
    assert (await client.get(f"/api/screenings/{draft['id']}", headers=admin.headers)).status_code == 200
    stale = await client.get("/api/screenings", headers={"Authorization": "Bearer not-a-token"})
    assert stale.status_code == 200 and stale.json()["items"] == []


async def test_screening_filters(client: httpx.AsyncClient, cat: Catalog) -> None:
    """Filters by city, cinema, movie, and by day in the cinema's own time zone."""
    jakarta = await cat.cinema(city="Jakarta", timezone="Asia/Jakarta", name="J")
    new_york = await cat.cinema(city="New York", timezone="America/New_York", name="NY")
    jh, nh = await cat.hall(jakarta), await cat.hall(new_york)
    dune, laen = await cat.movie("Dune"), await cat.movie("Agak Laen")
    # 23:00 in Jakarta on the 10th is 16:00Z on the 10th; 01:00 on the 11th is still the 10th in UTC.
    late = await cat.screening(jh, dune, "2030-01-10T23:00:00+07:00")
    after_midnight = await cat.screening(jh, laen, "2030-01-11T01:30:00+07:00")
    # 20:00 in New York on the 10th is already 01:00Z on the 11th.
    evening_ny = await cat.screening(nh, dune, "2030-01-10T20:00:00-05:00")
    assert await ids(client, "/api/screenings", date="2030-01-10") == [late["id"], evening_ny["id"]]
    assert await ids(client, "/api/screenings", date="2030-01-11") == [after_midnight["id"]]
    assert await ids(client, "/api/screenings", date="2030-01-11", city="new york") == []
    assert await ids(client, "/api/screenings", city="Jakarta") == [late["id"], after_midnight["id"]]
    assert await ids(client, "/api/screenings", cinema=new_york["id"]) == [evening_ny["id"]]
    assert await ids(client, "/api/screenings", movie=dune["id"]) == [late["id"], evening_ny["id"]]
    assert await ids(client, "/api/screenings", movie=laen["id"], cinema=new_york["id"]) == []
    ny = (await client.get(f"/api/screenings/{evening_ny['id']}")).json()
    assert ny["starts_at"] == "2030-01-10T20:00:00-05:00"
    for params, path in (
        ({"date": "10-01-2030"}, "$.date"),
        ({"date": "2030-02-30"}, "$.date"),
        ({"cinema": "x"}, "$.cinema"),
    ):
        bad = await client.get("/api/screenings", params=params)
        assert bad.status_code == 422 and bad.json()["error"]["path"] == path


async def test_pages_stay_stable_while_screenings_are_added(client: httpx.AsyncClient, cat: Catalog) -> None:
    """Paging while screenings are added before and after the cursor skips and repeats nothing."""
    cinema = await cat.cinema()
    halls = [await cat.hall(cinema, name=f"Studio {i}") for i in range(3)]
    movie = await cat.movie(minutes=45)  # one hour with cleaning
    original = []
    for hour in range(8, 16):
        for hall in halls:  # three screenings share each start time: ties broken by id
            original.append((await cat.screening(hall, movie, f"2030-01-10T{hour:02d}:00:00+07:00"))["id"])
    seen: list[int] = []
    earlier: list[int] = []
    later: list[int] = []
    cursor = None
    while True:
        params: Json = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/screenings", params=params)).json()
        seen.extend(s["id"] for s in page["items"])
        # Between pages, add one screening before everything listed so far and one after it all.
        hall, hour = halls[len(later) % 3], 8 + len(later)
        earlier.append((await cat.screening(hall, movie, f"2030-01-09T{hour:02d}:00:00+07:00"))["id"])
        later.append((await cat.screening(hall, movie, f"2030-01-11T{hour:02d}:00:00+07:00"))["id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(later) > 3
    # Every original in order, none twice; those added behind the cursor never show up, those
    # added ahead of it do (all but the last, added after the last page was read).
    assert seen == original + later[:-1]
    assert not set(earlier) & set(seen)
