"""Webhooks out to integrators: every event reaches a flaky receiver once, signed; dead letters
are visible and retryable; URLs and secrets are guarded."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from seatmap.errors import InvalidInput, InvalidSignature
from seatmap.runtime import Runtime
from seatmap.sales import webhooks
from seatmap.sales.gateway import verify_signature
from seatmap.settings import Settings
from tests.conftest import running
from tests.shopping import buy
from tests.support import TIMEOUT_FACTOR, User, create_user, login, make_screening, quick_users
from tests.webhooking import FAST, Receiver, delivering, serving, wait_until


async def register(client: httpx.AsyncClient, admin: User, url: str, types: list[str]) -> dict[str, Any]:
    r = await client.post(
        "/api/admin/webhooks", json={"url": url, "event_types": types}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def flaky_settings(settings: Settings) -> Settings:
    return replace(
        settings, webhook_allow_private=True, refund_deadline=0, job_max_attempts=FAST.max_attempts
    )


# ---- the integrator's view: every event, exactly once -------------------------------------------------


async def test_every_event_reaches_a_receiver_failing_30_percent_exactly_once_signed(
    rt: Runtime, settings: Settings
) -> None:
    """Sales, a sell-out (raced by 10 buyers), a refund, check-ins and a cancellation each reach an
    integrator that fails 30% of calls: every event processed exactly once, every signature valid."""
    s = flaky_settings(settings)
    receiver = Receiver(fail_rate=0.3)
    async with (
        serving(receiver) as url,
        running(s) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
        delivering(s),
    ):
        admin = await login(client, await create_user(rt, "admin"))
        staff = await login(client, await create_user(rt, "staff"))
        receiver.secrets.append((await register(client, admin, url, list(webhooks.EVENT_TYPES)))["secret"])
        small = await make_screening(
            rt, ["SSSSS", "SSSSS"], starts_in=timedelta(minutes=30), strand_rule=False
        )
        doomed = await make_screening(rt, ["SSSS"], starts_in=timedelta(days=2), strand_rule=False)
        buyers = await quick_users(rt, 12)

        # Ten buyers race for the last seats: exactly one of them sells the screening out.
        seats = [f"{row}{n}" for row in "AB" for n in range(1, 6)]
        orders = await asyncio.gather(
            *(buy(client, b, small, [seat]) for b, seat in zip(buyers, seats, strict=False))
        )
        # One refunds (the seat is free again), the counter sells it again.
        r = await client.post(f"/api/orders/{orders[0]['id']}/refund", headers=buyers[0].headers)
        assert r.status_code == 202, r.text
        sale = {"screening_id": small, "payment_method": "cash", "seats": [seats[0]]}
        r = await client.post("/api/boxoffice/sales", json=sale, headers=staff.headers)
        assert r.status_code == 201, r.text
        for paid in orders[1:4]:
            code = paid["tickets"][0]["code"]
            r = await client.post(f"/api/tickets/{code}/check-in", json={}, headers=staff.headers)
            assert r.status_code == 200, r.text
        # A refused check-in (used already) changes nothing and tells nobody.
        r = await client.post(f"/api/tickets/{code}/check-in", json={}, headers=staff.headers)
        assert r.status_code == 409
        await buy(client, buyers[10], doomed, ["A1"])
        await buy(client, buyers[11], doomed, ["A2", "A3"])
        r = await client.post(
            f"/api/admin/screenings/{doomed}/cancel", json={"reason": "projector"}, headers=admin.headers
        )
        assert r.status_code == 202, r.text

        async def settled() -> bool:
            async with rt.pool.acquire() as conn:
                open_ = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered')"
                    " + (SELECT count(*) FROM refunds WHERE status = 'pending')"
                )
            return bool(open_ == 0)

        await wait_until(settled)
        async with rt.pool.acquire() as conn:
            sent = {r["id"]: r["type"] for r in await conn.fetch("SELECT id, type FROM webhook_events")}
            delivered = "SELECT event_id, attempts FROM webhook_deliveries WHERE status = 'delivered'"
            attempts = {r["event_id"]: r["attempts"] for r in await conn.fetch(delivered)}

    assert receiver.refused_signatures == 0
    # Exactly once: every event the system recorded was processed once, and nothing else was.
    assert set(receiver.processed) == set(sent)
    assert set(receiver.processed.values()) == {1}
    # The receiver really failed about 30% of the calls, and each failure was retried with the
    # same Webhook-Id: calls of an id = its failed attempts + 1, as the delivery log says.
    failed = sum(1 for _, ok in receiver.calls if not ok)
    assert 0.15 * len(receiver.calls) <= failed <= 0.45 * len(receiver.calls)
    per_id = collections.Counter(webhook_id for webhook_id, _ in receiver.calls)
    assert per_id == attempts
    assert any(n > 1 for n in per_id.values())
    assert collections.Counter(sent.values()) == {
        "order.paid": 13,  # 10 racing buyers, the counter sale, 2 on the cancelled screening
        "seat.status_changed": 14,  # those 13 sales, and the refunded seat freed
        "screening.sold_out": 1,  # once per screening (as the admins' alert), however many raced
        "order.refunded": 3,  # the customer's refund and the cancellation's two
        "ticket.checked_in": 3,
        "screening.cancelled": 1,
    }
    by_type = collections.defaultdict(list)
    for event in receiver.events.values():
        by_type[event["type"]].append(event["data"])
    freed = [d for d in by_type["seat.status_changed"] if d["changes"][0]["state"] == "free"]
    assert freed == [
        {"screening_id": small, "order_id": orders[0]["id"], "changes": [{"seat": "A1", "state": "free"}]}
    ]
    assert {d["screening_id"] for d in by_type["screening.sold_out"]} == {small}
    paid = {d["order_id"]: d for d in by_type["order.paid"]}
    assert paid[orders[1]["id"]]["tickets"][0]["code"] == orders[1]["tickets"][0]["code"]
    assert {d["code"] for d in by_type["ticket.checked_in"]} == {o["tickets"][0]["code"] for o in orders[1:4]}
    assert by_type["screening.cancelled"][0]["refunds_queued"] == 2


# ---- dead letters ---------------------------------------------------------------------------------


async def test_a_delivery_out_of_attempts_is_dead_visible_and_retried_with_the_same_id(
    rt: Runtime, settings: Settings
) -> None:
    """An endpoint that always fails: its delivery ends dead in the log (with the last error);
    once it answers again, the admin's retry delivers the same Webhook-Id."""
    s = replace(settings, webhook_allow_private=True, job_max_attempts=3)
    receiver = Receiver(fail_rate=1.0)
    async with (
        serving(receiver) as url,
        running(s) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
        delivering(s, replace(FAST, max_attempts=3)),
    ):
        admin = await login(client, await create_user(rt, "admin"))
        endpoint = await register(client, admin, url, ["order.paid"])
        receiver.secrets.append(endpoint["secret"])
        screening = await make_screening(rt, ["SSSS"])
        (buyer,) = await quick_users(rt, 1)
        await buy(client, buyer, screening, ["A1"])
        log_url = f"/api/admin/webhooks/{endpoint['id']}/deliveries"

        async def dead() -> bool:
            r = await client.get(log_url, params={"status": "dead"}, headers=admin.headers)
            return len(r.json()["items"]) == 1

        await wait_until(dead)
        (delivery,) = (await client.get(log_url, headers=admin.headers)).json()["items"]
        assert delivery["status"] == "dead" and delivery["attempts"] == 3
        assert delivery["last_status"] == 503 and "try again later" in delivery["last_error"]
        listed = (await client.get(f"/api/admin/webhooks/{endpoint['id']}", headers=admin.headers)).json()
        assert listed["dead"] == 1
        detail = (
            await client.get(f"/api/admin/webhooks/deliveries/{delivery['id']}", headers=admin.headers)
        ).json()
        assert [a["status_code"] for a in detail["attempt_log"]] == [503, 503, 503]
        assert detail["event"]["type"] == "order.paid" and detail["event"]["id"] == delivery["event_id"]
        assert not receiver.processed

        receiver.fail_rate = 0.0
        r = await client.post(f"/api/admin/webhooks/deliveries/{delivery['id']}/retry", headers=admin.headers)
        assert r.status_code == 202 and r.json()["status"] == "pending", r.text

        async def delivered() -> bool:
            r = await client.get(log_url, params={"status": "delivered"}, headers=admin.headers)
            return len(r.json()["items"]) == 1

        await wait_until(delivered)
        assert receiver.processed == {delivery["event_id"]: 1}
        r = await client.post(f"/api/admin/webhooks/deliveries/{delivery['id']}/retry", headers=admin.headers)
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


async def test_a_disabled_endpoint_gets_no_new_events_and_its_queued_ones_go_dead(
    rt: Runtime, settings: Settings
) -> None:
    """Disabling an endpoint stops it at once: queued deliveries die (retryable), new events skip it."""
    s = replace(settings, webhook_allow_private=True)
    async with running(s) as srv, httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client:
        admin = await login(client, await create_user(rt, "admin"))
        endpoint = await register(client, admin, "http://127.0.0.1:9/never", ["order.paid"])
        screening = await make_screening(rt, ["SSSS"])
        buyers = await quick_users(rt, 2)
        await buy(client, buyers[0], screening, ["A1"])  # queued; no worker runs yet
        r = await client.patch(
            f"/api/admin/webhooks/{endpoint['id']}", json={"enabled": False}, headers=admin.headers
        )
        assert r.status_code == 200 and r.json()["enabled"] is False
        await buy(client, buyers[1], screening, ["A2"])
        async with delivering(s):
            log_url = f"/api/admin/webhooks/{endpoint['id']}/deliveries"

            async def dead() -> bool:
                r = await client.get(log_url, params={"status": "dead"}, headers=admin.headers)
                return len(r.json()["items"]) == 1

            await wait_until(dead)
        (only,) = (await client.get(log_url, headers=admin.headers)).json()["items"]
        assert only["last_error"] == "the endpoint is disabled"


# ---- one transaction with the change ------------------------------------------------------------------


async def test_an_event_rolls_back_with_its_change_and_nothing_is_written_without_subscribers(
    rt: Runtime, settings: Settings
) -> None:
    """No endpoint: a sale writes no event. With one, an event in a rolled-back transaction leaves
    no event, delivery or job behind."""
    async with rt.pool.acquire() as conn:
        assert await webhooks.emit(conn, settings, "order.paid", {"order_id": 1}) == 0
        await conn.execute(
            "INSERT INTO webhook_endpoints (url, event_types, secret) VALUES ($1, $2, 's')",
            "https://example.com/h",
            ["order.paid"],
        )
        with contextlib.suppress(RuntimeError):
            async with conn.transaction():
                assert await webhooks.emit(conn, settings, "order.paid", {"order_id": 1}) == 1
                raise RuntimeError("the change fails after the event was written")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM webhook_deliveries),"
            " (SELECT count(*) FROM jobs WHERE kind = 'webhook')"
        )
        assert counts is not None and tuple(counts) == (0, 0, 0)
        assert await webhooks.emit(conn, settings, "ticket.checked_in", {"code": "x"}) == 0  # not subscribed


# ---- endpoints, URLs and secrets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow_private", "ok"),
    [
        ("https://hooks.example.com/seatmap", False, True),
        ("http://hooks.example.com:8080/x?y=1", False, True),
        ("http://127.0.0.1:8000/hooks", True, True),
        ("http://127.0.0.1:8000/hooks", False, False),
        ("http://localhost/hooks", False, False),
        ("http://api.localhost/hooks", False, False),
        ("http://10.0.0.5/hooks", False, False),
        ("http://192.168.1.1/hooks", False, False),
        ("http://169.254.169.254/latest/meta-data", False, False),  # the cloud metadata service
        ("http://[::1]/hooks", False, False),
        ("http://[::ffff:127.0.0.1]/hooks", False, False),
        ("http://0.0.0.0/hooks", False, False),
        ("ftp://hooks.example.com/x", False, False),
        ("file:///etc/passwd", True, False),
        ("https://user:pw@hooks.example.com/", False, False),
        ("https://hooks.example.com/#frag", False, False),
        ("https:///nohost", False, False),
        ("https://hooks.example.com:99999/", False, False),
        ("https://hooks.exa mple.com/", False, False),
        ("https://hooks.example.com/" + "a" * 2000, False, False),
    ],
)
def test_webhook_urls_are_http_and_public_unless_allowed(url: str, allow_private: bool, ok: bool) -> None:
    """Only http(s) URLs to public hosts, without credentials; loopback only when allowed."""
    if ok:
        assert webhooks.check_url(url, allow_private=allow_private) == url
    else:
        with pytest.raises(InvalidInput) as raised:
            webhooks.check_url(url, allow_private=allow_private)
        assert raised.value.details["path"] == "$.url"


async def test_the_secret_is_shown_once_and_a_rotation_signs_with_both_for_a_while(
    rt: Runtime, settings: Settings
) -> None:
    """Created: the secret in the answer only; never in GET; loopback refused without the setting;
    rotated: a receiver still on the old secret and one on the new both verify."""
    async with (
        running(settings) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        admin = await login(client, await create_user(rt, "admin"))
        r = await client.post(
            "/api/admin/webhooks", json={"url": "http://127.0.0.1:1/x", "event_types": ["order.paid"]},
            headers=admin.headers,
        )  # fmt: skip
        assert r.status_code == 422 and r.json()["error"]["path"] == "$.url"
        r = await client.post(
            "/api/admin/webhooks", json={"url": "https://hooks.example.com/x", "event_types": ["sold.out"]},
            headers=admin.headers,
        )  # fmt: skip
        assert r.status_code == 422
        created = await register(
            client, admin, "https://hooks.example.com/x", ["seat.status_changed", "order.paid"]
        )
        assert created["secret"].startswith("whsec_") and created["event_types"] == [
            "order.paid",
            "seat.status_changed",
        ]
        for path in ("/api/admin/webhooks", f"/api/admin/webhooks/{created['id']}"):
            assert created["secret"] not in (await client.get(path, headers=admin.headers)).text
        r = await client.post(f"/api/admin/webhooks/{created['id']}/secret", headers=admin.headers)
        assert r.status_code == 200
        rotated = r.json()
        assert rotated["secret"] != created["secret"] and rotated["previous_secret_until"]
        async with rt.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1", created["id"]
            )
        assert row is not None
        header = webhooks.signature(row["secret"], row["previous_secret"], b"{}", int(time.time()))
        assert header.count("v1=") == 2
        for secret in (created["secret"], rotated["secret"]):
            verify_signature(secret.encode(), header, b"{}", tolerance=300, now=time.time())
        with pytest.raises(InvalidSignature):
            verify_signature(b"another", header, b"{}", tolerance=300, now=time.time())
        r = await client.delete(f"/api/admin/webhooks/{created['id']}", headers=admin.headers)
        assert r.status_code == 204
        assert (
            await client.get(f"/api/admin/webhooks/{created['id']}", headers=admin.headers)
        ).status_code == 404


def test_the_verification_snippet_in_the_docs_accepts_our_signatures_and_nothing_else() -> None:
    """docs/back-office.md's Python snippet, run as written: our header verifies (both secrets
    while one rotates); another secret, another body or an old timestamp do not."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "back-office.md").read_text()
    snippet = doc.split("### Verifying a webhook", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "back-office.md", "exec"), namespace)
    verify = namespace["verify"]
    body = b'{"id":"evt_1","type":"order.paid"}'
    now = int(time.time())
    header = webhooks.signature("whsec_new", "whsec_old", body, now)
    assert verify("whsec_new", header, body) and verify("whsec_old", header, body)
    assert not verify("whsec_other", header, body)
    assert not verify("whsec_new", header, body + b" ")
    assert not verify("whsec_new", webhooks.signature("whsec_new", None, body, now - 301), body)
    assert not verify("whsec_new", None, body) and not verify("whsec_new", "t=x,v1=y", body)
