"""A web process killed between the buyer's decision and its webhook: confirmed within a lease.

The simulated gateway writes a payment's events with the decision and delivers them from the
deciding process; their lease (5 s, renewed while a delivery runs) is what another process's
pump waits for before it delivers them instead. It used to be a fixed 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from seatmap.simulated.outbox import LEASE
from tests import refunding
from tests.conftest import running
from tests.outages import Gate
from tests.shopping import decide, pending_order, start_payment
from tests.support import TIMEOUT_FACTOR, free_port, make_screening, process_environ, quick_users


def _start(port: int, environ: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "seatmap.app:app_from_environ", "--factory"]
    return subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)], env=environ)


@contextlib.asynccontextmanager
async def web_process(settings: Settings, **env: str) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """One `uvicorn seatmap.app:app_from_environ` process (as the Procfile runs it), once ready."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = process_environ(settings, SEATMAP_PUBLIC_URL=base, SEATMAP_LOG_LEVEL="WARNING", **env)
    proc = _start(port, environ)
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(30 * TIMEOUT_FACTOR):
            while True:
                assert proc.poll() is None, "the web process died on start-up"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{base}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _paid(rt: Runtime, order_id: int) -> bool:
    paid = "SELECT count(*) FROM orders WHERE id = $1 AND status = 'paid'"
    return bool(await refunding.count(rt, paid, order_id))


async def test_a_process_killed_before_its_webhook_left_is_confirmed_by_another_within_a_lease(
    settings: Settings, rt: Runtime
) -> None:
    """The buyer approves on a web process whose webhook hangs: while it lives, its heartbeat keeps
    the event's lease, and nobody else delivers it. SIGKILLed, the other web process's pump
    delivers it once the lease lapses: the order is paid within about LEASE seconds of the kill,
    not a minute."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    (buyer,) = await quick_users(rt, 1)
    merchant = Gate("http://127.0.0.1:1")  # in front of the surviving process, once it runs
    await merchant.open()
    merchant.stalled = True  # the doomed process's delivery hangs here
    try:
        async with running(replace(settings, inline_worker=False)) as survivor:
            merchant.target_port = int(survivor.http.rpartition(":")[2])
            hook = f"{merchant.url()}/api/payments/webhooks/simulated"
            doomed_web = web_process(settings, SEATMAP_SIMULATED_WEBHOOK_URL=hook, SEATMAP_INLINE_WORKER="0")
            async with (
                doomed_web as (base, doomed),
                httpx.AsyncClient(base_url=base, timeout=60) as client,
            ):
                made = await pending_order(client, buyer, screening, ["A1"])
                payment = await start_payment(client, buyer, made["id"])
                approving = asyncio.create_task(decide(client, payment))
                async with asyncio.timeout(10 * TIMEOUT_FACTOR):
                    while not merchant.held:  # noqa: ASYNC110 (the delivery is under way)
                        await asyncio.sleep(0.02)
                # Longer than a lease: the heartbeat keeps it, so the survivor does not send a copy.
                await asyncio.sleep(1.6 * LEASE)
                assert merchant.held == 1, "another process took the event while this one delivered it"
                doomed.kill()
                killed = time.monotonic()
                merchant.stalled = False
                with contextlib.suppress(httpx.TransportError):
                    await approving  # the buyer's page died with its process
            await refunding.eventually(lambda: _paid(rt, made["id"]), within=30)
            window = time.monotonic() - killed
    finally:
        await merchant.close()
    print(f"paid {window:.2f}s after the deciding process was killed (lease {LEASE:.0f}s)")
    assert window < (LEASE + 2.0) * TIMEOUT_FACTOR, f"confirmed {window:.2f}s after the kill"
