"""Every endpoint that needs a role refuses callers without it, before looking at anything else."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from seatmap.api import Doc
from seatmap.app import create_app
from seatmap.openapi import endpoints
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.support import PASSWORD, User, create_user, login, make_screening

_RANK = {"customer": 0, "staff": 1, "admin": 2}
_SAMPLE = {"token": "1.aaaaaaaaaaaaaaaaaaaaaaaa", "code": "nosuchticketcode"}


def guarded(app: Starlette) -> list[tuple[str, str, str]]:
    """(method, concrete path, least role) of every documented endpoint that needs a role."""
    found = []
    for path, method, handler, _ in endpoints(app.routes):
        doc = getattr(handler, "__openapi__", None)
        if isinstance(doc, Doc) and doc.auth is not None:
            concrete = path
            for name, value in _SAMPLE.items():
                concrete = concrete.replace("{" + name + "}", value)
            while "{" in concrete:
                start, end = concrete.index("{"), concrete.index("}")
                concrete = concrete[:start] + "1" + concrete[end + 1 :]
            found.append((method, concrete, doc.auth))
    return found


async def test_role_checks_cover_every_guarded_endpoint(
    rt: Runtime, settings: Settings, client: httpx.AsyncClient
) -> None:
    """Anonymous callers get 401, and too small a role 403, on every guarded endpoint."""
    routes = guarded(create_app(settings))
    assert any(role == "admin" for _, _, role in routes)
    users = {role: await login(client, await create_user(rt, role)) for role in _RANK}  # type: ignore[arg-type]
    client.cookies.clear()
    wrong: list[str] = []
    for method, path, least in routes:
        body: Any = {} if method in ("POST", "PUT", "PATCH") else None
        r = await client.request(method, path, json=body)
        if r.status_code != 401:
            wrong.append(f"anonymous {method} {path}: {r.status_code}")
        for role, user in users.items():
            if _RANK[role] < _RANK[least]:
                r = await client.request(method, path, json=body, headers=user.headers)
                if r.status_code != 403 or r.json()["error"]["code"] != "forbidden":
                    wrong.append(f"{role} {method} {path}: {r.status_code}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwdw=="])
async def test_bad_tokens_are_401_not_anonymous(client: httpx.AsyncClient, header: str) -> None:
    """A broken or foreign Authorization header is refused outright, even on public reads."""
    for method, path in (("POST", "/api/holds"), ("GET", "/api/me")):
        r = await client.request(
            method, path, json={} if method == "POST" else None, headers={"Authorization": header}
        )
        assert r.status_code == 401, (method, path)


# ---- the role matrix: every guarded route of the app, and what each kind of caller gets -----------

# How a route decides (the table below names one per route):
#   "customer": any logged-in user (only anonymity is refused: the test above covers the rest);
#   "admin":    admins only; an organizer is refused even for its own cinemas (403);
#   "cinema":   admins (and staff where the least role is staff) everywhere, an organizer only for
#               its own cinemas' data (403 for another cinema's);
#   "listing":  an organizer passes and sees only its own cinemas' rows.
RULES: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/api/auth/logout"): ("customer", "customer"),
    ("GET", "/api/me"): ("customer", "customer"),
    ("POST", "/api/admin/users"): ("admin", "admin"),
    ("GET", "/api/admin/users"): ("admin", "admin"),
    ("GET", "/api/admin/users/{user}"): ("admin", "admin"),
    ("PATCH", "/api/admin/users/{user}"): ("admin", "admin"),
    ("POST", "/api/admin/cinemas"): ("admin", "admin"),
    ("PUT", "/api/admin/cinemas/{cinema}"): ("admin", "admin"),
    ("PATCH", "/api/admin/cinemas/{cinema}"): ("admin", "admin"),
    ("DELETE", "/api/admin/cinemas/{cinema}"): ("admin", "admin"),
    ("POST", "/api/admin/cinemas/{cinema}/auditoriums"): ("admin", "cinema"),
    ("PUT", "/api/admin/auditoriums/{auditorium}"): ("admin", "cinema"),
    ("DELETE", "/api/admin/auditoriums/{auditorium}"): ("admin", "cinema"),
    ("POST", "/api/admin/movies"): ("admin", "admin"),
    ("PATCH", "/api/admin/movies/{movie}"): ("admin", "admin"),
    ("DELETE", "/api/admin/movies/{movie}"): ("admin", "admin"),
    ("POST", "/api/admin/screenings"): ("admin", "cinema"),
    ("PATCH", "/api/admin/screenings/{screening}"): ("admin", "cinema"),
    ("DELETE", "/api/admin/screenings/{screening}"): ("admin", "cinema"),
    ("GET", "/api/holds"): ("customer", "customer"),
    ("POST", "/api/holds"): ("customer", "customer"),
    ("GET", "/api/holds/{token}"): ("customer", "customer"),
    ("DELETE", "/api/holds/{token}"): ("customer", "customer"),
    ("POST", "/api/holds/{token}/seats"): ("customer", "customer"),
    ("POST", "/api/holds/{token}/extend"): ("customer", "customer"),
    ("GET", "/api/admin/screenings/{screening}/blocks"): ("staff", "cinema"),
    ("POST", "/api/admin/screenings/{screening}/blocks"): ("admin", "cinema"),
    ("POST", "/api/admin/screenings/{screening}/unblock"): ("admin", "cinema"),
    ("POST", "/api/orders"): ("customer", "customer"),
    ("GET", "/api/orders"): ("customer", "customer"),
    ("GET", "/api/orders/{order}"): ("customer", "customer"),
    ("POST", "/api/orders/{order}/cancel"): ("customer", "customer"),
    ("POST", "/api/orders/{order}/payments"): ("customer", "customer"),
    ("GET", "/api/tickets/{ticket}"): ("customer", "customer"),
    ("POST", "/api/tickets/{ticket}/check-in"): ("staff", "cinema"),
    ("POST", "/api/boxoffice/sales"): ("staff", "cinema"),
    ("POST", "/api/admin/screenings/{spare}/cancel"): ("admin", "cinema"),
    ("POST", "/api/orders/{order}/refund"): ("customer", "customer"),
    ("GET", "/api/admin/refunds"): ("staff", "listing"),
    ("POST", "/api/admin/refunds/{refund}/retry"): ("admin", "cinema"),
    ("POST", "/api/admin/refunds/{refund}/confirm"): ("staff", "cinema"),
    ("GET", "/api/admin/gateway/webhooks/given-up"): ("admin", "admin"),
    ("POST", "/api/admin/gateway/webhooks/{webhook}/send-again"): ("admin", "admin"),
    ("GET", "/api/admin/webhooks"): ("admin", "admin"),
    ("POST", "/api/admin/webhooks"): ("admin", "admin"),
    ("GET", "/api/admin/webhooks/{endpoint}"): ("admin", "admin"),
    ("PATCH", "/api/admin/webhooks/{endpoint}"): ("admin", "admin"),
    ("POST", "/api/admin/webhooks/{endpoint}/secret"): ("admin", "admin"),
    ("GET", "/api/admin/webhooks/{endpoint}/deliveries"): ("admin", "admin"),
    ("GET", "/api/admin/webhooks/deliveries/{delivery}"): ("admin", "admin"),
    ("POST", "/api/admin/webhooks/deliveries/{delivery}/retry"): ("admin", "admin"),
    ("DELETE", "/api/admin/webhooks/{endpoint}"): ("admin", "admin"),  # last of them: it deletes
    ("GET", "/api/notifications"): ("customer", "customer"),
    ("GET", "/api/admin/orders"): ("staff", "listing"),
    ("GET", "/api/admin/orders/{order}"): ("staff", "cinema"),
    ("GET", "/api/admin/screenings/{screening}/attendees"): ("staff", "cinema"),
    ("GET", "/api/admin/reports"): ("admin", "listing"),
    ("GET", "/api/admin/reports/screenings/{screening}"): ("admin", "cinema"),
    ("GET", "/api/admin/reports/screenings/{screening}/seats"): ("admin", "cinema"),
}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


@dataclass
class Venue:
    """One cinema's things, as the matrix's paths and bodies name them."""

    cinema: int
    auditorium: int
    movie: int
    screening: int  # on sale, one ticket sold
    spare: int  # cancelled by the matrix
    ticket: str
    order: int
    refund: int  # from a cancelled third screening
    user: int
    webhook: int  # a simulated gateway webhook (delivered: sending it again is 409)
    endpoint: int  # an integrator's webhook endpoint (sales/webhook_admin.py)
    delivery: int  # one of its deliveries (pending: retrying it is 409)
    token: str = "1.aaaaaaaaaaaaaaaaaaaaaaaa"  # no such hold: only customer routes name one
    made: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    sold: itertools.count[int] = field(default_factory=lambda: itertools.count(2))  # A1 is sold

    def path(self, template: str) -> str:
        return template.format(**{k: getattr(self, k) for k in re.findall(r"\{(\w+)\}", template)})

    def body(self, method: str, template: str) -> Any:
        n = next(self.made)
        bodies: dict[str, Any] = {
            "/api/admin/cinemas/{cinema}/auditoriums": {"name": f"Hall {n}", "layout": {"rows": ["SS"]}},
            "/api/admin/auditoriums/{auditorium}": {"name": "Studio 1", "layout": {"rows": ["S" * 10] * 10}},
            "/api/admin/screenings": {
                "auditorium_id": self.auditorium,
                "movie_id": self.movie,
                "starts_at": (datetime.now(UTC) + timedelta(days=30 + n)).isoformat(),
                "prices": {"standard": 50000},
            },
            "/api/admin/screenings/{screening}/blocks": {"seats": ["J10"]},
            "/api/admin/screenings/{screening}/unblock": {"seats": ["J10"]},
            "/api/boxoffice/sales": {
                "screening_id": self.screening,
                "payment_method": "cash",
                "seats": [f"A{next(self.sold)}"],
            },
            "/api/admin/screenings/{spare}/cancel": {"reason": "The projector broke."},
        }
        if template in bodies:
            return bodies[template]
        return {} if method in ("POST", "PUT", "PATCH") else None


async def _venue(rt: Runtime, client: httpx.AsyncClient, admin: User) -> Venue:
    screening = await make_screening(rt)
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT s.auditorium_id, s.movie_id, a.cinema_id, s.starts_at FROM screenings s"
            " JOIN auditoriums a ON a.id = s.auditorium_id WHERE s.id = $1",
            screening,
        )
        assert row is not None
        extra = []
        for hours in (3, 6):
            extra.append(
                await conn.fetchval(
                    "INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at)"
                    " VALUES ($1, $2, $3::timestamptz, $3::timestamptz + interval '2 hours') RETURNING id",
                    row["auditorium_id"],
                    row["movie_id"],
                    row["starts_at"] + timedelta(hours=hours),
                )
            )
            await conn.execute(
                "INSERT INTO screening_prices (screening_id, category, amount)"
                " VALUES ($1, 'standard', 50000)",
                extra[-1],
            )
    orders = []
    for sold in (screening, extra[1]):
        r = await client.post(
            "/api/boxoffice/sales",
            json={"screening_id": sold, "payment_method": "cash", "seats": ["A1"]},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
        orders.append(r.json())
    r = await client.post(
        f"/api/admin/screenings/{extra[1]}/cancel", json={"reason": "Flooded."}, headers=admin.headers
    )
    assert r.status_code == 202, r.text
    async with rt.pool.acquire() as conn:
        refund = await conn.fetchval("SELECT id FROM refunds WHERE order_id = $1", orders[1]["id"])
    customer = await create_user(rt)
    async with rt.pool.acquire() as conn:
        payment = f"sim_roles_{orders[0]['id']}"
        await conn.execute(
            "INSERT INTO simulated_payments (id, reference, amount, currency, status, webhook_url,"
            " return_url, expires_at, decided_at) VALUES ($1, $2, 1, 'IDR', 'paid', 'http://127.0.0.1/none',"
            " 'http://127.0.0.1/none', now() + interval '1 hour', now())",
            payment, str(orders[0]["id"]),
        )  # fmt: skip
        webhook = await conn.fetchval(
            "INSERT INTO simulated_webhooks (payment_id, url, body, due_at, delivered_at)"
            " VALUES ($1, 'http://127.0.0.1/none', '{}'::bytea, now(), now()) RETURNING id",
            payment,
        )
        endpoint = await conn.fetchval(
            "INSERT INTO webhook_endpoints (url, event_types, secret) VALUES ('https://hooks.example.com/x',"
            " '{order.paid}', 'whsec_roles') RETURNING id"
        )
        event = f"evt_roles_{endpoint}"
        await conn.execute(
            "INSERT INTO webhook_events (id, type, body) VALUES ($1, 'order.paid', '{}'::bytea)", event
        )
        delivery = await conn.fetchval(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id) VALUES ($1, $2) RETURNING id",
            endpoint,
            event,
        )
    return Venue(
        cinema=row["cinema_id"],
        auditorium=row["auditorium_id"],
        movie=row["movie_id"],
        screening=screening,
        spare=extra[0],
        ticket=orders[0]["tickets"][0]["code"],
        order=orders[0]["id"],
        refund=refund,
        user=customer.id,
        webhook=webhook,
        endpoint=endpoint,
        delivery=delivery,
    )


async def test_role_matrix_over_every_guarded_route(
    rt: Runtime, settings: Settings, client: httpx.AsyncClient
) -> None:
    """Every guarded route declares its rule, and holds to it for anonymous callers, customers,
    staff, an organizer in its own cinema and in another one, and admins."""
    app_routes = {
        (method, _shape(path)): getattr(handler, "__openapi__", None)
        for path, method, handler, _ in endpoints(create_app(settings).routes)
    }
    table = {(method, _shape(path)): (method, path) for method, path in RULES}
    undeclared = [
        f"{method} {path}"
        for (method, path), doc in app_routes.items()
        if (method, path) not in table and ("/admin" in path or (isinstance(doc, Doc) and doc.auth))
    ]
    assert not undeclared, f"routes without a rule in RULES: {undeclared}"
    for key, (method, template) in table.items():
        doc = app_routes.get(key)
        assert isinstance(doc, Doc), f"RULES names {method} {template}, which the app does not have"
        least, rule = RULES[(method, template)]
        assert doc.auth == least, f"{method} {template}: documented for {doc.auth}, ruled for {least}"
        assert (doc.scope == "cinema") == (rule in ("cinema", "listing")), f"{method} {template}: scope"

    admin = await login(client, await create_user(rt, "admin"))
    own, other = await _venue(rt, client, admin), await _venue(rt, client, admin)
    r = await client.post(
        "/api/admin/users",
        json={
            "email": "organizer@example.com",
            "password": PASSWORD,
            "name": "Dedi Mulyadi",
            "role": "organizer",
            "cinema_ids": [own.cinema],
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["cinema_ids"] == [own.cinema]
    organizer = await login(client, User(r.json()["id"], "organizer@example.com", PASSWORD, "organizer"))
    customer = await login(client, await create_user(rt))
    staff = await login(client, await create_user(rt, "staff"))
    client.cookies.clear()

    wrong: list[str] = []

    async def expect(who: str, user: User | None, venue: Venue, method: str, template: str, ok: bool) -> None:
        path = venue.path(template)
        headers = user.headers if user is not None else {}
        r = await client.request(method, path, json=venue.body(method, template), headers=headers)
        if user is None:
            good = r.status_code == 401
        elif ok:
            good = r.status_code not in (401, 403, 404) and r.status_code < 500
        else:
            good = r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        if not good:
            wrong.append(f"{who} {method} {path}: {r.status_code} {r.text[:120]}")

    for (method, template), (least, rule) in RULES.items():
        await expect("anonymous", None, own, method, template, False)
        if least == "customer":
            continue  # the lower roles: test_role_checks_cover_every_guarded_endpoint
        await expect("customer", customer, own, method, template, False)
        await expect("staff", staff, own, method, template, least == "staff")
        await expect("organizer(other)", organizer, other, method, template, rule == "listing")
        await expect("organizer(own)", organizer, own, method, template, rule != "admin")
        await expect("admin", admin, own, method, template, True)
    assert not wrong, "\n".join(wrong)

    # What an organizer sees: its own cinemas' refunds, tickets and orders, nothing of another's.
    refunds = (await client.get("/api/admin/refunds", headers=organizer.headers)).json()["items"]
    assert [r["id"] for r in refunds] == [own.refund]
    for venue, seen in ((own, 200), (other, 404)):
        r = await client.get(f"/api/tickets/{venue.ticket}", headers=organizer.headers)
        assert r.status_code == seen
        r = await client.get(f"/api/orders/{venue.order}", headers=organizer.headers)
        assert r.status_code == seen
