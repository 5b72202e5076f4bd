"""What a buyer does, step by step, over the real REST API (helpers for the checkout tests)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import httpx

from seatmap.runtime import Runtime
from seatmap.sales.gateway import SIGNATURE_HEADER, sign, webhook_key
from seatmap.settings import Settings
from tests.support import User


async def hold(
    client: httpx.AsyncClient, user: User, screening: int, seats: list[str], ga: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"screening_id": screening, "seats": seats}
    if ga is not None:
        body["ga"] = ga
    r = await client.post("/api/holds", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    held: dict[str, Any] = r.json()
    return held


async def order(
    client: httpx.AsyncClient, user: User, token: str, *, key: str | None = None, **extra: Any
) -> httpx.Response:
    headers = {**user.headers, "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post("/api/orders", json={"hold_token": token, **extra}, headers=headers)


async def start_payment(client: httpx.AsyncClient, user: User, order_id: int) -> dict[str, Any]:
    r = await client.post(f"/api/orders/{order_id}/payments", headers=user.headers)
    assert r.status_code in (200, 201), r.text
    payment: dict[str, Any] = r.json()
    return payment


async def decide(
    client: httpx.AsyncClient, payment: dict[str, Any], choice: str = "approve"
) -> httpx.Response:
    """The buyer presses a button on the gateway's page (same server, as in production)."""
    page = payment["redirect_url"].split("/pay/", 1)[1]
    return await client.post(f"/pay/{page}/{choice}")


async def get_order(client: httpx.AsyncClient, user: User, order_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/orders/{order_id}", headers=user.headers)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def pending_order(
    client: httpx.AsyncClient, user: User, screening: int, seats: list[str], **extra: Any
) -> dict[str, Any]:
    held = await hold(client, user, screening, seats)
    r = await order(client, user, held["token"], **extra)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def buy(
    client: httpx.AsyncClient, user: User, screening: int, seats: list[str], **extra: Any
) -> dict[str, Any]:
    """hold -> order -> payment page -> approve -> (webhook) -> the paid order with its tickets."""
    made = await pending_order(client, user, screening, seats, **extra)
    payment = await start_payment(client, user, made["id"])
    r = await decide(client, payment)
    assert r.status_code == 303, r.text
    paid = await get_order(client, user, made["id"])
    assert paid["status"] == "paid", paid
    return paid


def signed_event(
    settings: Settings,
    *,
    order_id: int,
    payment_id: str,
    amount: int,
    kind: str = "payment.paid",
    event_id: str | None = None,
    currency: str = "IDR",
    at: float | None = None,
    key: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A webhook body and headers as the gateway would sign them (or with another key / time)."""
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": kind,
        "created": int(time.time()),
        "data": {
            "payment_id": payment_id,
            "reference": str(order_id),
            "amount": amount,
            "currency": currency,
        },
    }
    body = json.dumps(event).encode()
    stamp = int(at if at is not None else time.time())
    header = sign(key if key is not None else webhook_key(settings), body, stamp)
    return body, {SIGNATURE_HEADER: header, "content-type": "application/json"}


async def seat_states(rt: Runtime, screening: int) -> dict[str, str]:
    """The live map's non-free seats, read from Redis as a viewer's snapshot would be."""
    snap = await rt.holds.inventory.snapshot(screening)
    return snap.seats


async def table_counts(rt: Runtime) -> dict[str, int]:
    """Rows in each checkout table: the test of "nothing half-written"."""
    counts: dict[str, int] = {}
    async with rt.pool.acquire() as conn:
        for table in ("orders", "order_lines", "payments", "payment_events", "tickets"):
            counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return counts


async def race_for_seats(
    client: httpx.AsyncClient, users: list[User], screening: int, labels: list[str]
) -> tuple[list[httpx.Response], dict[str, int]]:
    """Every user asks for 1-4 of `labels` (a fixed draw) at the same moment; the answers, in
    the users' order, and who (by index) was granted each seat. A seat granted twice fails."""
    rng = random.Random(7)
    wants = [rng.sample(labels, rng.randint(1, 4)) for _ in users]
    start = asyncio.Event()

    async def attempt(headers: dict[str, str], seats: list[str]) -> httpx.Response:
        await start.wait()
        return await client.post(
            "/api/holds", json={"screening_id": screening, "seats": seats}, headers=headers
        )

    tasks = [asyncio.create_task(attempt(u.headers, w)) for u, w in zip(users, wants, strict=True)]
    await asyncio.sleep(0.05)
    start.set()
    responses = await asyncio.gather(*tasks)
    holder: dict[str, int] = {}
    for i, (r, seats) in enumerate(zip(responses, wants, strict=True)):
        if r.status_code == 201:
            for seat in seats:
                assert seat not in holder, f"{seat} held twice"
                holder[seat] = i
        else:
            assert r.status_code == 409, r.text
            lost = r.json()["error"]["seats"]
            assert lost and set(lost) <= set(seats), (lost, seats)
    return responses, holder
