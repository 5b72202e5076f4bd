"""Refunds through real worker processes: every paid order refunded exactly once, whatever fails."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from seatmap import jobs
from seatmap.runtime import Runtime
from seatmap.sales import refunds
from seatmap.settings import Settings
from tests.refunding import (
    PaidOrder,
    all_jobs_done,
    assert_each_refunded_exactly_once,
    cancel_screening,
    count,
    eventually,
    paid_orders,
    refunded,
    refunded_at_least,
    worker,
)
from tests.shopping import buy, decide, get_order, hold, order, pending_order, seat_states, start_payment
from tests.support import Server, User, Viewer, logged_in, make_screening

MANY = 500


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Refunds queued here get 40 attempts: with 35% of calls failing, 10 (the default) would
    let about one refund in 36,000 die, and then not every order could be refunded."""
    return replace(settings, job_max_attempts=40)


# The gateway fails 30% of refund calls, and 5% more refund but never answer (a timeout).
FLAKY = {
    "SEATMAP_SIMULATED_REFUND_FAILURE_RATE": "0.3",
    "SEATMAP_SIMULATED_REFUND_TIMEOUT_RATE": "0.05",
}


async def _big_cancelled_screening(client: httpx.AsyncClient, rt: Runtime) -> list[PaidOrder]:
    screening = await make_screening(rt, ["S" * 25] * 20, strand_rule=False)
    paid = await paid_orders(rt, screening, MANY)
    assert (await cancel_screening(client, rt, screening))["refunds_queued"] == MANY
    return paid


@pytest.mark.serial  # 500 orders and worker processes against their time bounds: alone
async def test_a_cancelled_screening_refunds_500_orders_once_despite_a_flaky_gateway(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """30% of gateway calls fail and some time out after refunding: each order is refunded once."""
    paid = await _big_cancelled_screening(client, rt)
    assert await count(rt, "SELECT min(max_attempts) FROM jobs WHERE kind = 'refund'") == 40
    async with worker(rt.settings, tmp_path / "worker.log", **FLAKY) as proc:
        await eventually(lambda: all_jobs_done(rt), within=40)
        assert await proc.stop() == 0
    await assert_each_refunded_exactly_once(rt, paid)
    # The failures really happened, including answers lost after the gateway refunded.
    assert await count(rt, "SELECT count(*) FROM jobs WHERE kind = 'refund' AND attempts > 1") > 50
    assert "was already made at the gateway" in proc.log
    # Every buyer was told twice: the screening is cancelled, the money is back.
    async with rt.pool.acquire() as conn:
        told = await conn.fetch("SELECT kind, count(*) FROM notifications GROUP BY kind")
        mails = await conn.fetchval("SELECT count(*) FROM mail_outbox WHERE status = 'stored'")
    assert dict(told) == {"screening_cancelled": MANY, "refund_done": MANY}  # type: ignore[arg-type]
    assert mails == 2 * MANY
    assert "Traceback" not in proc.log


@pytest.mark.serial  # 500 orders and worker processes against their time bounds: alone
async def test_a_worker_killed_mid_way_and_restarted_loses_and_doubles_nothing(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """SIGKILL in the middle of the refunds; a new worker takes over the leases and finishes."""
    paid = await _big_cancelled_screening(client, rt)
    slow = {**FLAKY, "SEATMAP_SIMULATED_LATENCY": "0.02", "SEATMAP_JOB_LEASE": "1.5"}
    async with worker(rt.settings, tmp_path / "first.log", **slow) as first:
        await eventually(lambda: refunded_at_least(rt, MANY // 4))
        await first.kill()
    done_before = await refunded(rt)
    assert done_before < MANY, "the worker finished before it could be killed"
    stuck = await count(rt, "SELECT count(*) FROM jobs WHERE status = 'running'")
    async with worker(rt.settings, tmp_path / "second.log", **slow) as second:
        await eventually(lambda: all_jobs_done(rt), within=40)
        assert await second.stop() == 0
    await assert_each_refunded_exactly_once(rt, paid)
    assert stuck > 0  # the killed worker held jobs; the second one ran them after their lease
    assert "Traceback" not in second.log


@pytest.mark.serial  # 500 orders and worker processes against their time bounds: alone
async def test_two_workers_at_once_share_the_refunds_without_doubling_any(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """Two worker processes on the same queue: both work, each order is refunded once."""
    paid = await _big_cancelled_screening(client, rt)
    slow = {**FLAKY, "SEATMAP_SIMULATED_LATENCY": "0.01"}
    async with (
        worker(rt.settings, tmp_path / "a.log", **slow) as a,
        worker(rt.settings, tmp_path / "b.log", **slow) as b,
    ):
        await eventually(lambda: all_jobs_done(rt), within=40)
        assert await a.stop() == 0 and await b.stop() == 0
    await assert_each_refunded_exactly_once(rt, paid)
    done = [set(re.findall(r"refund (\d+) of order", w.log)) for w in (a, b)]
    assert done[0] and done[1], "one worker did everything"
    assert len(done[0] | done[1]) == MANY


# ---- the customer's refund ---------------------------------------------------------------------


async def test_a_customer_refunds_in_time_their_seats_are_on_sale_at_once_and_money_follows(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """Before the deadline: 202, the seats free for everyone now, the worker returns the money once."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    order = await buy(client, buyer, screening, ["A4", "A5"])
    viewer = await Viewer.connect(server, screening)
    assert (await viewer.next("snapshot"))["seats"] == {"A4": "sold", "A5": "sold"}

    r = await client.post(f"/api/orders/{order['id']}/refund", headers=buyer.headers)
    assert r.status_code == 202, r.text
    refunding = r.json()
    assert refunding["status"] == "refund_pending"
    assert {t["status"] for t in refunding["tickets"]} == {"void"}
    freed = await viewer.next("delta")
    assert sorted((c["seat"], c["state"]) for c in freed["changes"]) == [("A4", "free"), ("A5", "free")]
    other = await logged_in(rt, client)
    await hold(client, other, screening, ["A4"])  # on sale again at once
    r = await client.post(f"/api/orders/{order['id']}/refund", headers=buyer.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_closed"

    async with worker(rt.settings, tmp_path / "worker.log"):
        await eventually(lambda: all_jobs_done(rt))
    refunded = await get_order(client, buyer, order["id"])
    assert refunded["status"] == "refunded"
    async with rt.pool.acquire() as conn:
        ledger = await conn.fetch("SELECT amount FROM simulated_refunds")
    assert [r["amount"] for r in ledger] == [order["total"]]
    r = await client.get("/api/notifications", headers=buyer.headers)
    kinds = sorted(n["kind"] for n in r.json()["items"])
    assert kinds == ["booking_confirmed", "refund_done"]
    await viewer.close()


async def test_after_the_deadline_a_refund_is_refused_with_the_deadline(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Less than SEATMAP_REFUND_DEADLINE before the start: 409 refund_closed naming the deadline."""
    screening = await make_screening(rt, ["S" * 10], starts_in=timedelta(hours=1), strand_rule=False)
    buyer = await logged_in(rt, client)
    order = await buy(client, buyer, screening, ["A1"])
    r = await client.post(f"/api/orders/{order['id']}/refund", headers=buyer.headers)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    starts = datetime.fromisoformat(await _starts(rt, screening))
    deadline = datetime.fromisoformat(error["deadline"])
    assert error["code"] == "refund_closed" and deadline == starts - timedelta(seconds=7200)
    assert deadline.isoformat(timespec="seconds") in error["message"]
    assert (await get_order(client, buyer, order["id"]))["status"] == "paid"
    assert (await seat_states(rt, screening)) == {"A1": "sold"}
    assert await count(rt, "SELECT count(*) FROM refunds") == 0


async def _starts(rt: Runtime, screening: int) -> str:
    async with rt.pool.acquire() as conn:
        starts: datetime = await conn.fetchval("SELECT starts_at FROM screenings WHERE id = $1", screening)
    return starts.isoformat()


async def test_only_the_buyer_or_an_admin_can_refund_an_order(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Someone else's order is 404 (as if it did not exist), staff 403; an admin may refund it."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    order = await buy(client, buyer, screening, ["A7"])
    url = f"/api/orders/{order['id']}/refund"
    stranger = await logged_in(rt, client)
    r = await client.post(url, headers=stranger.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.post("/api/orders/999999/refund", headers=stranger.headers)
    assert r.status_code == 404
    staff = await logged_in(rt, client, "staff")
    r = await client.post(url, headers=staff.headers)
    assert r.status_code == 403
    assert await count(rt, "SELECT count(*) FROM refunds") == 0
    admin = await logged_in(rt, client, "admin")
    r = await client.post(url, headers=admin.headers)
    assert r.status_code == 202 and r.json()["status"] == "refund_pending"
    async with rt.pool.acquire() as conn:
        who = await conn.fetchval("SELECT requested_by FROM refunds")
    assert who == admin.id


async def test_a_box_office_sale_of_a_cancelled_screening_is_refunded_at_the_counter(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Cash goes back at the counter: the refund is `manual`, no gateway call, the tickets void."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    staff = await logged_in(rt, client, "staff")
    r = await client.post(
        "/api/boxoffice/sales",
        json={"screening_id": screening, "seats": ["A2"], "payment_method": "cash"},
        headers=staff.headers,
    )
    assert r.status_code == 201, r.text
    sale = r.json()
    await cancel_screening(client, rt, screening)
    async with rt.pool.acquire() as conn:
        refund_id = await conn.fetchval("SELECT id FROM refunds WHERE order_id = $1", sale["id"])
    assert server.runtime is not None
    job = jobs.Job(1, refunds.JOB, {"refund_id": refund_id}, 1, 3, datetime.now(UTC))
    await refunds.run_refund(server.runtime, job)
    admin = await logged_in(rt, client, "admin")
    (item,) = (await client.get("/api/admin/refunds", headers=admin.headers)).json()["items"]
    assert (item["status"], item["amount"]) == ("manual", sale["total"])
    assert await count(rt, "SELECT count(*) FROM simulated_refunds") == 0
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT o.status, (SELECT array_agg(status) FROM tickets WHERE order_id = o.id) AS tickets"
            " FROM orders o WHERE o.id = $1",
            sale["id"],
        )
    assert row is not None and (row["status"], row["tickets"]) == ("refunded", ["void"])
    assert await seat_states(rt, screening) == {}


async def test_a_payment_after_its_order_expired_is_refunded_by_the_same_job(
    server: Server, client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    """Checkout marks the late money for refund and queues it at once; the worker returns it once."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer = await logged_in(rt, client)
    made = await pending_order(client, buyer, screening, ["A6"])
    payment = await start_payment(client, buyer, made["id"])
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE orders SET expires_at = now() - interval '1 s' WHERE id = $1", made["id"])
    assert (await decide(client, payment)).status_code == 303  # the buyer pays, too late
    late = await get_order(client, buyer, made["id"])
    assert (late["status"], late["needs_refund"]) == ("expired", True)
    async with rt.pool.acquire() as conn:
        queued = await conn.fetchrow(
            "SELECT r.reason, r.amount, j.kind FROM refunds r JOIN jobs j ON j.dedupe_key = 'refund:' || r.id"
        )
    assert queued is not None and tuple(queued) == ("order_expired", made["total"], "refund")
    async with worker(rt.settings, tmp_path / "worker.log") as proc:
        await eventually(lambda: all_jobs_done(rt))
    after = await get_order(client, buyer, made["id"])
    assert (after["status"], after["needs_refund"], after["tickets"]) == ("expired", False, [])
    async with rt.pool.acquire() as conn:
        ledger = await conn.fetch("SELECT amount FROM simulated_refunds")
    assert [r["amount"] for r in ledger] == [made["total"]]
    assert "had no refund yet" not in proc.log  # queued by checkout itself, not by the safety net
    r = await client.get("/api/notifications", headers=buyer.headers)
    assert [n["kind"] for n in r.json()["items"]] == ["refund_done"]


async def _redis_restarted(rt: Runtime) -> None:
    """Redis lost everything of this test (as a kill and an empty restart would): the next touch
    of a screening rebuilds it from PostgreSQL."""
    keys = [k async for k in rt.redis.scan_iter(match=f"{rt.settings.redis_prefix}:*", count=1000)]
    if keys:
        await rt.redis.delete(*keys)


async def _run_refund_job(rt: Runtime, order_id: int) -> None:
    """The worker's run of the order's refund job (the handler `seatmap worker` calls)."""
    async with rt.pool.acquire() as conn:
        job = await conn.fetchrow(
            "SELECT j.id, j.payload, j.created_at FROM refunds r"
            " JOIN jobs j ON j.dedupe_key = 'refund:' || r.id WHERE r.order_id = $1",
            order_id,
        )
    assert job is not None
    payload = job["payload"] if isinstance(job["payload"], dict) else json.loads(job["payload"])
    await refunds.run_refund(rt, jobs.Job(job["id"], refunds.JOB, payload, 1, 10, job["created_at"]))


async def test_a_late_refund_job_after_a_redis_restart_leaves_the_next_buyers_seats_sold(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A refunds, B buys the same seats, Redis restarts empty, A's refund job runs: B's seats stay
    sold for every viewer and nobody can hold them (issue 13, invariant 5)."""
    screening = await make_screening(rt, ["S" * 10, "S" * 10], strand_rule=False)
    a, b, c = [await logged_in(rt, client) for _ in range(3)]
    first = await buy(client, a, screening, ["B5", "B6"])
    r = await client.post(f"/api/orders/{first['id']}/refund", headers=a.headers)
    assert r.status_code == 202 and r.json()["status"] == "refund_pending", r.text
    second = await buy(client, b, screening, ["B5", "B6"])  # the refund job has not run yet
    assert {t["status"] for t in second["tickets"]} == {"valid"}

    await _redis_restarted(rt)
    assert await seat_states(rt, screening) == {"B5": "sold", "B6": "sold"}  # rebuilt from PostgreSQL
    viewer = await Viewer.connect(server, screening)
    assert (await viewer.next("snapshot"))["seats"] == {"B5": "sold", "B6": "sold"}

    await _run_refund_job(rt, first["id"])
    assert (await get_order(client, a, first["id"]))["status"] == "refunded"
    await _run_refund_job(rt, first["id"])  # a retried job too
    assert await seat_states(rt, screening) == {"B5": "sold", "B6": "sold"}
    body = {"screening_id": screening, "seats": ["B5", "B6"]}
    r = await client.post("/api/holds", json=body, headers=c.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "seat_taken", r.text
    with pytest.raises(TimeoutError):
        await viewer.next("delta", within=0.5)  # nobody was ever told B5 or B6 is free
    await viewer.close()


async def _buy_ga(client: httpx.AsyncClient, user: User, screening: int, units: int) -> dict[str, Any]:
    held = await hold(client, user, screening, [], ga={"area": "Floor", "quantity": units})
    r = await order(client, user, held["token"])
    assert r.status_code == 201, r.text
    assert (await decide(client, await start_payment(client, user, r.json()["id"]))).status_code == 303
    paid = await get_order(client, user, r.json()["id"])
    assert paid["status"] == "paid", paid
    return paid


async def test_a_late_refund_job_after_a_redis_restart_gives_back_no_units_it_no_longer_has(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """The same for general admission: A's 2 units were given back at the refund; after Redis was
    rebuilt, A's refund job must not give them back a second time (the map would offer units
    that are sold)."""
    screening = await make_screening(rt, ["S" * 4], ga=[("Floor", 5)], strand_rule=False)
    a, b = [await logged_in(rt, client) for _ in range(2)]
    first = await _buy_ga(client, a, screening, 2)
    r = await client.post(f"/api/orders/{first['id']}/refund", headers=a.headers)
    assert r.status_code == 202, r.text
    assert (await rt.holds.inventory.snapshot(screening)).ga == {"Floor": 5}
    await _buy_ga(client, b, screening, 3)
    await _redis_restarted(rt)
    assert (await rt.holds.inventory.snapshot(screening)).ga == {"Floor": 2}  # rebuilt from PostgreSQL

    await _run_refund_job(rt, first["id"])
    assert (await get_order(client, a, first["id"]))["status"] == "refunded"
    assert (await rt.holds.inventory.snapshot(screening)).ga == {"Floor": 2}
