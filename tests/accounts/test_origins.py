"""Cross-site and host attacks: CSRF with the session cookie, Host header injection into the URLs
we hand out, and origins compared by scheme, host and port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from seatmap.accounts.origins import origin_allowed, parse_origin, same_origin, trusted_origins
from seatmap.app import create_app
from seatmap.errors import ConfigError
from seatmap.runtime import Runtime
from seatmap.settings import Secret, Settings
from tests.shopping import buy, decide, get_order, hold, pending_order, start_payment
from tests.support import (
    PASSWORD,
    TIMEOUT_FACTOR,
    Server,
    User,
    Viewer,
    create_user,
    free_port,
    login,
    make_screening,
)

# ---- origins compared: one pure function --------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "trusted", "allowed"),
    [
        ("http://127.0.0.1:8200", ["http://127.0.0.1:8200"], True),
        # The scheme counts: a page of another scheme on the same host and port is another origin.
        ("evil://127.0.0.1:8200", ["http://127.0.0.1:8200"], False),
        ("https://127.0.0.1:8200", ["http://127.0.0.1:8200"], False),
        # The port counts: another port of the same host is another origin (though the same site).
        ("http://127.0.0.1:8201", ["http://127.0.0.1:8200"], False),
        ("http://127.0.0.1", ["http://127.0.0.1:8200"], False),
        # The host counts, and a prefix or suffix is not the host.
        ("http://127.0.0.2:8200", ["http://127.0.0.1:8200"], False),
        ("https://tickets.example.com.evil.example", ["https://tickets.example.com"], False),
        ("https://evil-tickets.example.com", ["https://tickets.example.com"], False),
        # Default ports, letter case and a base URL's path or trailing slash change nothing.
        ("https://tickets.example.com", ["https://tickets.example.com:443"], True),
        ("http://tickets.example.com:80", ["http://tickets.example.com"], True),
        ("HTTPS://Tickets.Example.COM", ["https://tickets.example.com/"], True),
        ("https://tickets.example.com", ["https://tickets.example.com/shop"], True),
        ("http://[::1]:8000", ["http://[::1]:8000"], True),
        # What names no origin is never allowed: `null` (sandboxed frames, file: pages), garbage.
        ("null", ["http://127.0.0.1:8200"], False),
        ("", ["http://127.0.0.1:8200"], False),
        ("127.0.0.1:8200", ["http://127.0.0.1:8200"], False),
        ("http://127.0.0.1:99999", ["http://127.0.0.1:99999"], False),
        ("http://user@127.0.0.1:8200", ["http://127.0.0.1:8200"], False),
        # An allow-listed custom scheme is that scheme only.
        ("capacitor://localhost", ["capacitor://localhost"], True),
        ("http://localhost", ["capacitor://localhost"], False),
        # `*` allows any origin; an empty list none.
        ("https://anyone.example", ["*"], True),
        ("http://127.0.0.1:8200", [], False),
        ("http://b.example", ["http://a.example", "http://b.example"], True),
    ],
)
def test_origins_are_compared_by_scheme_host_and_port(origin: str, trusted: list[str], allowed: bool) -> None:
    """An Origin is allowed only when its scheme, host and port all match a trusted one."""
    assert origin_allowed(origin, trusted) is allowed


def test_an_origin_parses_to_scheme_host_and_port() -> None:
    """Parsing fills in the default port and lower-cases; non-origins parse to None."""
    assert parse_origin("HTTPS://A.Example") == ("https", "a.example", 443)
    assert parse_origin("http://a.example:8080/x?y") == ("http", "a.example", 8080)
    assert parse_origin("null") is None
    assert same_origin("http://a.example", "http://a.example:80")
    assert not same_origin("null", "null")


def _dev(tmp_path: Path, **changes: Any) -> Settings:
    base = Settings(
        database_url=None, redis_url=None, data_dir=tmp_path, dev=True, jwt_secret=Secret("j" * 40)
    )
    return replace(base, **changes)


def test_the_trusted_origins_are_the_public_url_and_the_allow_list(tmp_path: Path) -> None:
    """The public URL's origin and SEATMAP_ALLOWED_ORIGINS are trusted; in dev mode a loopback
    public URL is as trusted under its other loopback names, on its port only."""
    dev = _dev(tmp_path, public_url="http://localhost:8000", allowed_origins=("https://kiosk.example",))
    trusted = trusted_origins(dev)
    for origin in (
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
        "https://kiosk.example",
    ):
        assert origin_allowed(origin, trusted), origin
    for origin in ("http://127.0.0.1:8001", "https://localhost:8000", "http://evil.example:8000"):
        assert not origin_allowed(origin, trusted), origin
    production = replace(dev, dev=False, public_url="https://tickets.example.com")
    assert not origin_allowed("http://127.0.0.1:8000", trusted_origins(production))
    assert origin_allowed("https://tickets.example.com", trusted_origins(production))


# ---- the public URL: configured, never the request's Host ------------------------------------------


def test_the_public_url_comes_from_the_environment(tmp_path: Path) -> None:
    """SEATMAP_PUBLIC_URL is read and checked; unset, dev mode serves localhost:8000 and a web
    process outside dev mode refuses to start."""
    production = {
        "DATABASE_URL": "postgresql://db/x",
        "REDIS_URL": "redis://r",
        "SEATMAP_JWT_SECRET": "j" * 40,
        "SEATMAP_DATA_DIR": str(tmp_path),
    }
    settings = Settings.from_environ({**production, "SEATMAP_PUBLIC_URL": "https://tickets.example.com/"})
    assert settings.base_url == "https://tickets.example.com"
    for bad in ("tickets.example.com", "ftp://tickets.example.com", "https://", "https://a:b@x.example",
                "https://x.example:99999", "https://x.example/?a=1"):  # fmt: skip
        with pytest.raises(ConfigError, match="SEATMAP_PUBLIC_URL"):
            Settings.from_environ({**production, "SEATMAP_PUBLIC_URL": bad})
    without = Settings.from_environ(production)
    with pytest.raises(ConfigError, match="SEATMAP_PUBLIC_URL"):
        create_app(without)
    assert _dev(tmp_path).base_url == "http://localhost:8000"


def test_serve_names_the_address_it_serves() -> None:
    """`seatmap serve`'s dev public URL is the address it serves, as it prints it."""
    from seatmap.__main__ import served_url

    assert served_url("127.0.0.1", 8000) == "http://localhost:8000"
    assert served_url("0.0.0.0", 9000) == "http://localhost:9000"
    assert served_url("kiosk.lan", 8000) == "http://kiosk.lan:8000"
    assert served_url("fe80::1", 8000) == "http://[fe80::1]:8000"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A buyer here holds seats for several orders of one screening at once."""
    return replace(settings, holds_per_user=5)


@pytest.fixture
async def screening(rt: Runtime) -> int:
    return await make_screening(rt, ["SSSSSSSS"] * 2, strand_rule=False)


async def _payment_row(rt: Runtime, provider_ref: str) -> dict[str, Any]:
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT webhook_url, return_url FROM simulated_payments WHERE id = $1", provider_ref
        )
    assert row is not None
    return dict(row)


async def test_a_forged_host_header_does_not_move_the_payment_urls(
    server: Server, client: httpx.AsyncClient, rt: Runtime, screening: int
) -> None:
    """`POST /api/orders/{id}/payments` with `Host: attacker:8202`: the buyer is sent to our
    payment page, and the gateway posts the signed webhook to us, not to the attacker."""
    alice = await login(client, await create_user(rt))
    made = await pending_order(client, alice, screening, ["A1", "A2"])
    r = await client.post(
        f"/api/orders/{made['id']}/payments", headers={**alice.headers, "Host": "attacker:8202"}
    )
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["redirect_url"].startswith(f"{server.http}/pay/sim_"), payment
    async with rt.pool.acquire() as conn:
        ref = await conn.fetchval("SELECT provider_ref FROM payments WHERE id = $1", payment["id"])
    row = await _payment_row(rt, ref)
    assert row["webhook_url"] == f"{server.http}/api/payments/webhooks/simulated"
    assert row["return_url"] == f"{server.http}/?order={made['id']}"
    # The webhook reached us: approving pays the order.
    assert (await decide(client, payment)).status_code == 303
    assert (await get_order(client, alice, made["id"]))["status"] == "paid"


async def test_a_dev_server_without_a_public_url_ignores_the_host_header(
    settings: Settings, rt: Runtime, screening: int
) -> None:
    """Even a dev server that was not told its address builds URLs from the dev default
    (http://localhost:8000), never from the Host header."""
    from tests.conftest import running

    async with (
        running(create_app(settings)) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        alice = await login(client, await create_user(rt))
        made = await pending_order(client, alice, screening, ["B1"])
        r = await client.post(
            f"/api/orders/{made['id']}/payments", headers={**alice.headers, "Host": "attacker:8202"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["redirect_url"].startswith("http://localhost:8000/pay/sim_")


# ---- CSRF: cookie-authenticated changes from another origin -----------------------------------------


@pytest.fixture
async def victim(server: Server, rt: Runtime) -> AsyncIterator[tuple[User, httpx.AsyncClient]]:
    """A customer logged in in a browser: the session cookies, no Authorization header. Its
    requests carry whatever Origin a test gives them, as the browser would for that page."""
    user = await create_user(rt)
    async with httpx.AsyncClient(base_url=server.http, timeout=10 * TIMEOUT_FACTOR) as browser:
        r = await browser.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield User(user.id, user.email, user.password, user.role, r.json()["access_token"]), browser


def _attacks(server: Server) -> dict[str, dict[str, str]]:
    """The headers a browser sends with a form a foreign page auto-submits (enctype=text/plain)."""
    form = {"Content-Type": "text/plain"}
    return {
        "another site": {**form, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        "another port of this host": {
            **form,
            "Origin": f"http://127.0.0.1:{free_port()}",
            "Sec-Fetch-Site": "same-site",
        },
        "another scheme": {**form, "Origin": server.http.replace("http://", "evil://")},
        "a sandboxed frame": {**form, "Origin": "null", "Sec-Fetch-Site": "cross-site"},
        "no Origin, Sec-Fetch-Site only": {**form, "Sec-Fetch-Site": "same-site"},
    }


ATTACKS = [
    "another site",
    "another port of this host",
    "another scheme",
    "a sandboxed frame",
    "no Origin, Sec-Fetch-Site only",
]


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "cross_origin"


@pytest.mark.parametrize("attack", ATTACKS)
async def test_a_foreign_page_cannot_cancel_the_victims_order(
    server: Server, client: httpx.AsyncClient, victim: tuple[User, httpx.AsyncClient], screening: int,
    attack: str,
) -> None:  # fmt: skip
    """A page on another origin auto-submitting a text/plain form to /api/orders/{id}/cancel
    with the victim's cookies gets 403 cross_origin; the order stays pending."""
    user, browser = victim
    made = await pending_order(client, user, screening, ["A1"])
    _refused(
        await browser.post(
            f"/api/orders/{made['id']}/cancel", content=b"x=", headers=_attacks(server)[attack]
        )
    )
    assert (await get_order(client, user, made["id"]))["status"] == "pending"


async def test_a_foreign_page_cannot_pay_refund_extend_or_log_out(
    server: Server, client: httpx.AsyncClient, victim: tuple[User, httpx.AsyncClient], screening: int
) -> None:
    """The same form against /payments, /refund, /extend, logout and refresh: each 403
    cross_origin, and nothing changed (no payment opened, still paid, the same expiry, still
    logged in)."""
    user, browser = victim
    foreign = _attacks(server)["another port of this host"]
    made = await pending_order(client, user, screening, ["A1"])
    _refused(await browser.post(f"/api/orders/{made['id']}/payments", content=b"x=", headers=foreign))
    assert (await get_order(client, user, made["id"]))["payments"] == []

    paid = await buy(client, user, screening, ["B1"])
    _refused(await browser.post(f"/api/orders/{paid['id']}/refund", content=b"x=", headers=foreign))
    assert (await get_order(client, user, paid["id"]))["status"] == "paid"

    held = await hold(client, user, screening, ["B5"])
    before = (await client.get(f"/api/holds/{held['token']}", headers=user.headers)).json()["expires_at"]
    _refused(await browser.post(f"/api/holds/{held['token']}/extend", content=b"x=", headers=foreign))
    _refused(await browser.delete(f"/api/holds/{held['token']}", headers=foreign))
    after = await client.get(f"/api/holds/{held['token']}", headers=user.headers)
    assert after.status_code == 200 and after.json()["expires_at"] == before

    _refused(await browser.post("/api/auth/refresh", content=b"x=", headers=foreign))
    _refused(await browser.post("/api/auth/logout", content=b"x=", headers=foreign))
    assert (await browser.get("/api/me")).status_code == 200


async def test_the_sites_own_pages_and_api_clients_still_work(
    server: Server, client: httpx.AsyncClient, victim: tuple[User, httpx.AsyncClient], screening: int
) -> None:
    """The web UI (its own origin, cookies) cancels and logs out; a bearer client may send any
    Origin; a non-browser client with the cookie and no Origin is not refused either."""
    user, browser = victim
    own = {"Origin": server.http, "Sec-Fetch-Site": "same-origin"}
    made = await pending_order(client, user, screening, ["A1"])
    r = await browser.post(f"/api/orders/{made['id']}/cancel", headers=own)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text

    other = await pending_order(client, user, screening, ["A3"])
    foreign = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    r = await browser.post(f"/api/orders/{other['id']}/cancel", headers={**foreign, **user.headers})
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text

    third = await pending_order(client, user, screening, ["A5"])
    r = await browser.post(f"/api/orders/{third['id']}/payments")
    assert r.status_code == 201, r.text
    # Reading is never refused (GET changes nothing), whatever the origin.
    assert (await browser.get("/api/me", headers=foreign)).status_code == 200
    assert (await browser.post("/api/auth/logout", headers=own)).status_code == 204
    assert (await browser.get("/api/me")).status_code == 401


async def test_the_payment_page_buttons_work_from_the_payment_page(
    server: Server, client: httpx.AsyncClient, victim: tuple[User, httpx.AsyncClient], screening: int
) -> None:
    """The simulated gateway's Approve button (a form on our own origin, the buyer's cookies
    along) still pays."""
    user, browser = victim
    made = await pending_order(client, user, screening, ["A7"])
    payment = await start_payment(client, user, made["id"])
    page = payment["redirect_url"].split("/pay/", 1)[1]
    r = await browser.post(f"/pay/{page}/approve", headers={"Origin": server.http})
    assert r.status_code == 303, r.text
    assert (await get_order(client, user, made["id"]))["status"] == "paid"


# ---- the WebSocket handshake ------------------------------------------------------------------------


async def test_a_socket_from_another_scheme_or_port_is_refused(server: Server, screening: int) -> None:
    """`evil://127.0.0.1:PORT` (the same host and port, another scheme) and another port of this
    host cannot open the socket (403 at the handshake); the site's own origin can."""
    for origin in (server.http.replace("http://", "evil://"), f"http://127.0.0.1:{free_port()}"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await Viewer.connect(server, screening, origin=websockets.Origin(origin))
        assert refused.value.response.status_code == 403, origin
    same = await Viewer.connect(server, screening, origin=websockets.Origin(server.http))
    await same.next("snapshot")
    await same.close()
