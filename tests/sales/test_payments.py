"""Payments: the whole flow across processes, and webhooks that are forged, replayed, repeated,
out of order or late; the simulated gateway's page and refunds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from seatmap.app import create_app
from seatmap.errors import Conflict, IdempotencyKeyReused, InvalidSignature
from seatmap.runtime import Runtime
from seatmap.sales.gateway import sign, verify_signature, webhook_key
from seatmap.settings import Secret, Settings
from tests.conftest import running
from tests.shopping import (
    buy,
    decide,
    get_order,
    hold,
    order,
    pending_order,
    seat_states,
    signed_event,
    start_payment,
    table_counts,
)
from tests.support import TIMEOUT_FACTOR, Server, User, Viewer, free_port, make_screening, quick_users
from tests.test_multiprocess import web_processes


@pytest.fixture
async def screening(rt: Runtime) -> int:
    return await make_screening(rt, ["SSSSSSSS"] * 4)


@asynccontextmanager
async def serving(settings: Settings, **changes: Any) -> AsyncIterator[tuple[Server, httpx.AsyncClient]]:
    """Our server with other settings (e.g. a misbehaving gateway), and a client for it."""
    async with (
        running(replace(settings, **changes)) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        yield srv, client


async def provider_ref(rt: Runtime, payment_id: int) -> str:
    async with rt.pool.acquire() as conn:
        ref: str = await conn.fetchval("SELECT provider_ref FROM payments WHERE id = $1", payment_id)
    return ref


async def wait_for(check: Any, within: float = 5.0) -> Any:
    """Poll `check` (a webhook may come late) until it returns something true."""
    for _ in range(int(within * TIMEOUT_FACTOR / 0.05)):
        if found := await check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing after {within} s")


async def test_whole_flow_reaches_a_viewer_on_another_process(rt: Runtime, settings: Settings) -> None:
    """hold -> order -> payment page -> approve -> webhook -> tickets on process 1; a viewer on
    process 2 sees each seat turn held, then sold."""
    screening = await make_screening(rt, ["SSSSSSSS"] * 4)
    (alice,) = await quick_users(rt, 1)
    async with (
        web_processes(settings, 2) as (one, two),
        httpx.AsyncClient(base_url=one.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        viewer = await Viewer.connect(two, screening)
        await viewer.next("snapshot")
        held = await hold(client, alice, screening, ["C3", "C4"])
        made = (await order(client, alice, held["token"], holder_names=["Dewi", "Putra"])).json()
        payment = await start_payment(client, alice, made["id"])
        assert payment["status"] == "created" and payment["amount"] == made["total"] == 100000
        page = await client.get(payment["redirect_url"])
        assert page.status_code == 200 and "Approve" in page.text and "100,000 IDR" in page.text
        assert (await decide(client, payment)).status_code == 303
        paid = await get_order(client, alice, made["id"])
        assert paid["status"] == "paid" and paid["payments"][0]["status"] == "paid"
        assert paid["currency_exponent"] == 0  # whole rupiah: what the browser divides by
        assert [(t["seat"], t["holder_name"]) for t in paid["tickets"]] == [("C3", "Dewi"), ("C4", "Putra")]
        qr = await client.get(paid["tickets"][0]["qr_url"])
        assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
        states: dict[str, list[str]] = {"C3": [], "C4": []}
        while states != {"C3": ["held", "sold"], "C4": ["held", "sold"]}:
            delta = await viewer.next("delta", within=3)
            for change in delta["changes"]:
                states[change["seat"]].append(change["state"])
        other = await Viewer.connect(two, screening)
        assert (await other.next("snapshot"))["seats"] == {"C3": "sold", "C4": "sold"}
        page = await client.get(payment["redirect_url"])
        assert "paid" in page.text and "Approve" not in page.text
        await viewer.close()
        await other.close()


async def test_declined_payment_keeps_the_order_open_for_another_try(
    rt: Runtime, client: httpx.AsyncClient, screening: int
) -> None:
    """Declining leaves the order pending and the seats held; a new payment can then succeed."""
    (alice,) = await quick_users(rt, 1)
    made = await pending_order(client, alice, screening, ["A1", "A2"])
    first = await start_payment(client, alice, made["id"])
    assert (await start_payment(client, alice, made["id"]))["id"] == first["id"]  # still open
    assert (await decide(client, first, "decline")).status_code == 303
    assert (await decide(client, first, "approve")).status_code == 409  # the gateway's decision is final
    after = await get_order(client, alice, made["id"])
    assert after["status"] == "pending" and after["payments"][0]["status"] == "declined"
    second = await start_payment(client, alice, made["id"])
    assert second["id"] != first["id"]
    assert (await decide(client, second)).status_code == 303
    assert (await get_order(client, alice, made["id"]))["status"] == "paid"


async def test_gateway_set_to_decline_declines_everything(rt: Runtime, settings: Settings) -> None:
    """SEATMAP_SIMULATED_DECLINE: even an approval comes back declined; nothing is sold."""
    screening = await make_screening(rt, ["SSSS"])
    (alice,) = await quick_users(rt, 1)
    async with serving(settings, simulated_decline=True) as (_, client):
        made = await pending_order(client, alice, screening, ["A1", "A2"])
        payment = await start_payment(client, alice, made["id"])
        await decide(client, payment, "approve")
        after = await get_order(client, alice, made["id"])
    assert (after["status"], after["payments"][0]["status"], after["tickets"]) == ("pending", "declined", [])


async def test_duplicate_deliveries_make_one_set_of_tickets(rt: Runtime, settings: Settings) -> None:
    """The gateway sends each webhook three times at once: one payment, one event, two tickets."""
    screening = await make_screening(rt, ["SSSS"])
    (alice,) = await quick_users(rt, 1)
    async with serving(settings, simulated_webhook_copies=3) as (_, client):
        paid = await buy(client, alice, screening, ["A3", "A4"])
    assert len(paid["tickets"]) == 2 and len(paid["payments"]) == 1
    counts = await table_counts(rt)
    assert (counts["tickets"], counts["payments"], counts["payment_events"]) == (2, 1, 1)


async def test_out_of_order_events_never_move_a_payment_back(rt: Runtime, settings: Settings) -> None:
    """`paid` arrives before the older `processing`: the payment stays paid, the order paid."""
    screening = await make_screening(rt, ["SSSS"])
    (alice,) = await quick_users(rt, 1)
    async with serving(settings, simulated_out_of_order=True) as (_, client):
        paid = await buy(client, alice, screening, ["A1", "A2"])
        assert paid["payments"][0]["status"] == "paid" and len(paid["tickets"]) == 2
        async with rt.pool.acquire() as conn:
            outcomes = [
                r["outcome"] for r in await conn.fetch("SELECT outcome FROM payment_events ORDER BY 1")
            ]
        assert outcomes == ["paid", "stale"]
        # A declined event for it, even a fresh one, changes nothing either.
        ref = await provider_ref(rt, paid["payments"][0]["id"])
        body, headers = signed_event(
            settings, order_id=paid["id"], payment_id=ref, amount=paid["total"], kind="payment.declined"
        )
        r = await client.post("/api/payments/webhooks/simulated", content=body, headers=headers)
        assert r.json()["outcome"] == "stale"
        assert (await get_order(client, alice, paid["id"]))["payments"][0]["status"] == "paid"


async def test_forged_and_stale_webhooks_change_nothing(
    rt: Runtime, settings: Settings, client: httpx.AsyncClient, screening: int
) -> None:
    """A wrong key, a tampered body, no signature or a timestamp from the past: 400, and not one
    row of any checkout table changes."""
    (alice,) = await quick_users(rt, 1)
    made = await pending_order(client, alice, screening, ["B1", "B2"])
    ref = await provider_ref(rt, (await start_payment(client, alice, made["id"]))["id"])
    before = await table_counts(rt)
    url = "/api/payments/webhooks/simulated"
    good = {"order_id": made["id"], "payment_id": ref, "amount": made["total"]}
    body, headers = signed_event(settings, **good, key=b"not-the-secret")
    attempts = [(body, headers)]
    body, headers = signed_event(settings, **good)
    attempts.append((body.replace(b'"amount": 100000', b'"amount": 1'), headers))
    attempts.append((body, {"content-type": "application/json"}))
    attempts.append((body, {**headers, "Seatmap-Signature": "t=abc,v1=00"}))
    attempts.append(signed_event(settings, **good, at=time.time() - settings.webhook_tolerance - 5))
    attempts.append(signed_event(settings, **good, at=time.time() + settings.webhook_tolerance + 5))
    reasons = []
    for body, headers in attempts:
        r = await client.post(url, content=body, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_signature"), r.text
        reasons.append(r.json()["error"]["reason"])
    assert reasons == ["mismatch", "mismatch", "missing", "malformed", "stale", "stale"]
    assert await table_counts(rt) == before
    assert (await get_order(client, alice, made["id"]))["status"] == "pending"
    assert (
        await client.post("/api/payments/webhooks/stripe", content=body, headers=headers)
    ).status_code == 404


async def test_replayed_webhook_is_a_no_op(
    rt: Runtime, settings: Settings, client: httpx.AsyncClient, screening: int
) -> None:
    """The same signed event delivered again (a replay within the tolerance) answers `duplicate`
    and writes nothing; events for unknown orders are recorded and ignored."""
    (alice,) = await quick_users(rt, 1)
    made = await pending_order(client, alice, screening, ["D1", "D2"])
    ref = await provider_ref(rt, (await start_payment(client, alice, made["id"]))["id"])
    body, headers = signed_event(settings, order_id=made["id"], payment_id=ref, amount=made["total"])
    url = "/api/payments/webhooks/simulated"
    first = (await client.post(url, content=body, headers=headers)).json()
    assert first["outcome"] == "paid" and first["duplicate"] is False
    after_first = await table_counts(rt)
    replies = await asyncio.gather(*(client.post(url, content=body, headers=headers) for _ in range(3)))
    assert all(r.json()["duplicate"] and r.json()["outcome"] == "paid" for r in replies)
    assert await table_counts(rt) == after_first
    body, headers = signed_event(settings, order_id=424242, payment_id="sim_x", amount=1)
    assert (await client.post(url, content=body, headers=headers)).json()["outcome"] == "unknown_order"


async def test_payment_after_the_hold_expired_is_marked_for_refund(rt: Runtime, settings: Settings) -> None:
    """The buyer approves in time but the webhook arrives after the hold (and order) expired: no
    ticket, the order is expired, the payment is paid and marked for refund, the seats are free."""
    screening = await make_screening(rt, ["SSSS"])
    (alice,) = await quick_users(rt, 1)
    async with serving(settings, payment_window=1, simulated_webhook_delay=1.3) as (_, client):
        made = await pending_order(client, alice, screening, ["A1", "A2"])
        payment = await start_payment(client, alice, made["id"])
        assert (await decide(client, payment)).status_code == 303

        async def settled() -> dict[str, Any] | None:
            found = await get_order(client, alice, made["id"])
            return found if found["payments"][0]["status"] == "paid" else None

        after = await wait_for(settled)
        assert after["status"] == "expired" and after["tickets"] == [] and after["needs_refund"] is True
        assert after["payments"][0]["refund_reason"] == "order_expired"

        async def restocked() -> bool:
            return await seat_states(rt, screening) == {}

        await wait_for(restocked)  # the expired hold's seats are back on sale, not sold
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM payments WHERE needs_refund") == 1


async def test_seats_sold_behind_redis_back_make_the_payment_a_refund(
    rt: Runtime, settings: Settings, client: httpx.AsyncClient, screening: int
) -> None:
    """Force the PostgreSQL guard: Redis wrongly shows a sold seat free, Bob holds and pays for it;
    the ticket insert fails on the unique index, nothing of it is written, and Bob's payment is
    marked for refund (seats_taken) while Alice keeps her ticket."""
    alice, bob = await quick_users(rt, 2)
    await buy(client, alice, screening, ["A1", "A2"])
    await rt.redis.hdel(f"{rt.settings.redis_prefix}:{{scr:{screening}}}:seats", "A1", "A2")
    made = await pending_order(client, bob, screening, ["A1", "A2"])
    before = await table_counts(rt)
    ref = await provider_ref(rt, (await start_payment(client, bob, made["id"]))["id"])
    body, headers = signed_event(settings, order_id=made["id"], payment_id=ref, amount=made["total"])
    receipt = (await client.post("/api/payments/webhooks/simulated", content=body, headers=headers)).json()
    assert (receipt["outcome"], receipt["refund_reason"]) == ("refund_needed", "seats_taken")
    after = await get_order(client, bob, made["id"])
    assert (after["status"], after["tickets"], after["needs_refund"]) == ("expired", [], True)
    counts = await table_counts(rt)
    assert counts["tickets"] == before["tickets"] == 2
    assert counts["payment_events"] == before["payment_events"] + 1


async def test_simulated_gateway_remembers_refund_keys(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """A refund with the same idempotency key is returned again without moving more money; the
    same key for another amount is refused, and so is refunding more than was paid."""
    (alice,) = await quick_users(rt, 1)
    paid = await buy(client, alice, screening, ["B5", "B6"])
    ref = await provider_ref(rt, paid["payments"][0]["id"])
    assert server.runtime is not None
    gateway = server.runtime.provider
    first = await gateway.refund(ref, 60000, "refund-1")
    again = await gateway.refund(ref, 60000, "refund-1")
    assert (first.replayed, again.replayed, again.id) == (False, True, first.id)
    with pytest.raises(IdempotencyKeyReused):
        await gateway.refund(ref, 1000, "refund-1")
    with pytest.raises(Conflict):
        await gateway.refund(ref, 50000, "refund-2")
    assert (await gateway.refund(ref, 40000, "refund-2")).replayed is False
    async with rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT sum(amount) FROM simulated_refunds") == 100000


async def test_payment_page_edges(rt: Runtime, client: httpx.AsyncClient, screening: int) -> None:
    """Unknown payments are 404 pages; only the buyer may start a payment; a paid order is 409."""
    alice, bob = await quick_users(rt, 2)
    assert (await client.get("/pay/sim_nope")).status_code == 404
    assert (await client.post("/pay/sim_nope/approve")).status_code == 404
    made = await pending_order(client, alice, screening, ["C1", "C2"])
    r = await client.post(f"/api/orders/{made['id']}/payments", headers=bob.headers)
    assert r.status_code == 404
    payment = await start_payment(client, alice, made["id"])
    await decide(client, payment)
    r = await client.post(f"/api/orders/{made['id']}/payments", headers=alice.headers)
    assert (r.status_code, r.json()["error"]["status"]) == (409, "paid")


def test_signature_accepts_a_rotating_secret_and_rejects_others() -> None:
    """Several v1 values (old and new secret) pass if one matches; the check is on the exact body."""
    now = time.time()
    body = b'{"id":"evt_1"}'
    old = sign(b"old-secret", body, int(now)).split(",")[1]
    header = sign(b"new-secret", body, int(now)) + "," + old
    verify_signature(b"old-secret", header, body, tolerance=300, now=now)
    verify_signature(b"new-secret", header, body, tolerance=300, now=now)
    with pytest.raises(InvalidSignature):
        verify_signature(b"third-secret", header, body, tolerance=300, now=now)
    with pytest.raises(InvalidSignature):
        verify_signature(b"new-secret", header, body + b" ", tolerance=300, now=now)
    settings = Settings(
        database_url=None, redis_url=None, data_dir=Path("."), dev=True, jwt_secret=Secret("j" * 40)
    )
    derived = webhook_key(settings)
    assert derived != b"j" * 40 and derived == webhook_key(settings)
    assert webhook_key(replace(settings, webhook_secret=Secret("w" * 32))) == b"w" * 32


async def test_standing_places_paid_online_become_tickets(rt: Runtime, client: httpx.AsyncClient) -> None:
    """Two standing places of a three-place area paid online: two tickets, one place left, and a
    later payment for two more becomes a refund, not an oversold area."""
    screening = await make_screening(rt, ["SSSS"], ga=[("Floor", 3)])
    alice, bob = await quick_users(rt, 2)
    held = await hold(client, alice, screening, [], ga={"area": "Floor", "quantity": 2})
    made = (await order(client, alice, held["token"])).json()
    await decide(client, await start_payment(client, alice, made["id"]))
    paid = await get_order(client, alice, made["id"])
    assert [(t["area"], t["status"]) for t in paid["tickets"]] == [("Floor", "valid")] * 2
    ga_key = f"{rt.settings.redis_prefix}:{{scr:{screening}}}:ga"
    assert await rt.redis.hget(ga_key, "Floor") == "2"
    # Redis forgets the sale (bypassed): Bob can hold two more, but PostgreSQL counts.
    await rt.redis.hset(ga_key, "Floor", "0")
    held = await hold(client, bob, screening, [], ga={"area": "Floor", "quantity": 2})
    made = (await order(client, bob, held["token"])).json()
    await decide(client, await start_payment(client, bob, made["id"]))
    refused = await get_order(client, bob, made["id"])
    assert refused["tickets"] == [] and refused["payments"][0]["refund_reason"] == "seats_taken"


def test_checkout_settings_come_from_the_environment() -> None:
    """Every checkout variable is read; a short webhook secret is refused at start-up."""
    from seatmap.errors import ConfigError

    base = {"DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r", "SEATMAP_JWT_SECRET": "j" * 40}
    settings = Settings.from_environ(
        {
            **base,
            "SEATMAP_PAYMENT_WINDOW": "600",
            "SEATMAP_WEBHOOK_SECRET": "w" * 40,
            "SEATMAP_WEBHOOK_TOLERANCE": "60",
            "SEATMAP_SIMULATED_DECLINE": "1",
            "SEATMAP_SIMULATED_WEBHOOK_COPIES": "2",
            "SEATMAP_SIMULATED_OUT_OF_ORDER": "yes",
            "SEATMAP_SIMULATED_WEBHOOK_DELAY": "1.5",
            "SEATMAP_SIMULATED_WEBHOOK_URL": "http://hooks.internal/api/payments/webhooks/simulated",
            "SEATMAP_CHECKIN_OPENS_BEFORE": "1800",
        }
    )
    assert (settings.payment_window, settings.webhook_tolerance, settings.checkin_opens_before) == (
        600,
        60,
        1800,
    )
    assert settings.webhook_secret == Secret("w" * 40) and "w" * 40 not in repr(settings)
    assert settings.simulated_decline and settings.simulated_out_of_order
    assert (settings.simulated_webhook_copies, settings.simulated_webhook_delay) == (2, 1.5)
    assert settings.simulated_webhook_url == "http://hooks.internal/api/payments/webhooks/simulated"
    with pytest.raises(ConfigError):
        Settings.from_environ({**base, "SEATMAP_WEBHOOK_SECRET": "short"})


async def _webhooks(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT attempts, last_status, delivered_at IS NOT NULL AS delivered,"
            " extract(epoch FROM due_at - now()) AS due_in FROM simulated_webhooks ORDER BY id"
        )
    return [dict(r) for r in rows]


async def until_paid(client: httpx.AsyncClient, user: User, order_id: int) -> dict[str, Any]:
    """The order once a (late) webhook has made it paid."""

    async def paid() -> dict[str, Any] | None:
        found = await get_order(client, user, order_id)
        return found if found["status"] == "paid" else None

    settled: dict[str, Any] = await wait_for(paid)
    return settled


def _state(webhook: dict[str, Any]) -> tuple[int, int | None, bool]:
    return webhook["attempts"], webhook["last_status"], webhook["delivered"]


async def test_a_late_webhook_survives_a_restart_of_the_gateway(rt: Runtime, settings: Settings) -> None:
    """The buyer approves; before the (late) webhook leaves, the server stops. The next server
    delivers it: the order is paid with its tickets, from what the gateway wrote down."""
    screening = await make_screening(rt, ["SSSS"])
    (alice,) = await quick_users(rt, 1)
    port = free_port()
    merchant = f"http://127.0.0.1:{port}/api/payments/webhooks/simulated"
    async with serving(settings, simulated_webhook_delay=1.0, simulated_webhook_url=merchant) as (_, client):
        made = await pending_order(client, alice, screening, ["A1", "A2"])
        payment = await start_payment(client, alice, made["id"])
        assert (await decide(client, payment)).status_code == 303
    assert [(w["attempts"], w["delivered"]) for w in await _webhooks(rt)] == [(0, False)]
    async with (
        running(create_app(settings), port=port) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        settled = await until_paid(client, alice, made["id"])
        assert [t["seat"] for t in settled["tickets"]] == ["A1", "A2"]
    assert [_state(w) for w in await _webhooks(rt)] == [(1, 200, True)]


async def test_a_refused_webhook_is_kept_and_delivered_once_the_merchant_takes_it(
    rt: Runtime, settings: Settings
) -> None:
    """The merchant answers 400 (here: it checks signatures with another secret). The gateway keeps
    the event and tries again later with back-off; once the merchant is fixed, the order is paid."""
    screening = await make_screening(rt, ["SSSS"])
    (alice,) = await quick_users(rt, 1)
    port = free_port()
    merchant = f"http://127.0.0.1:{port}/api/payments/webhooks/simulated"
    gateway = replace(settings, webhook_secret=Secret("the gateway's secret"), simulated_webhook_url=merchant)
    wrong = replace(settings, webhook_secret=Secret("a stale secret"))
    right = replace(settings, webhook_secret=Secret("the gateway's secret"))
    async with (
        serving(gateway) as (_, client),
        running(create_app(wrong), port=port),
    ):
        made = await pending_order(client, alice, screening, ["A1", "A2"])
        payment = await start_payment(client, alice, made["id"])
        assert (await decide(client, payment)).status_code == 303
        (refused,) = await _webhooks(rt)
        assert _state(refused) == (1, 400, False)
        assert 25 < refused["due_in"] <= 30  # the first back-off
        assert (await get_order(client, alice, made["id"]))["status"] == "pending"
    async with (
        running(create_app(right), port=port) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        async with rt.pool.acquire() as conn:  # the back-off has passed
            await conn.execute("UPDATE simulated_webhooks SET due_at = now()")
        assert len((await until_paid(client, alice, made["id"]))["tickets"]) == 2
    assert [_state(w) for w in await _webhooks(rt)] == [(2, 200, True)]
