"""`seatmap worker` processes through a PostgreSQL outage and a SIGKILL mid-refund.

Real worker processes (tests/refunding.py) on the test's databases; the outage is a gate of the
test's own between one worker and PostgreSQL (tests/outages.py), so the web server that queues
the refunds keeps its database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import httpx

from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests import refunding
from tests.conftest import running
from tests.outages import gate
from tests.support import TIMEOUT_FACTOR, make_screening


async def _ask_refund(client: httpx.AsyncClient, order: refunding.PaidOrder) -> None:
    r = await client.post(f"/api/orders/{order.id}/refund", headers=order.buyer.headers)
    assert r.status_code == 202, r.text


async def _refund_done(rt: Runtime, order_id: int) -> bool:
    return bool(
        await refunding.count(
            rt, "SELECT count(*) FROM refunds WHERE order_id = $1 AND status = 'succeeded'", order_id
        )
    )


async def test_the_worker_rides_out_a_postgres_outage_and_does_the_refunds_queued_meanwhile(
    settings: Settings, rt: Runtime, tmp_path: Path
) -> None:
    """PostgreSQL gone for seconds under a running worker: it stays up, says so once, and the
    refunds asked for before and during the outage are done, each once, when it is back."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    before, during = await refunding.paid_orders(rt, screening, 2)
    web = replace(settings, inline_worker=False)
    assert settings.database_url is not None
    async with (
        running(web) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
        gate(settings.database_url) as pg,
    ):
        async with refunding.worker(
            settings, tmp_path / "worker.log", DATABASE_URL=pg.url(), SEATMAP_OUTAGE_MAX_BACKOFF="0.5"
        ) as proc:
            await pg.close()
            await _ask_refund(client, before)  # queued just as the worker lost its database
            await proc.wait_for_line("jobs.claim: outage started")
            await _ask_refund(client, during)
            await asyncio.sleep(3)  # several of the worker's retries
            assert proc.process.returncode is None, proc.log
            await pg.open()
            await refunding.eventually(lambda: _refund_done(rt, during.id), within=30)
            await refunding.eventually(lambda: _refund_done(rt, before.id))
            await proc.wait_for_line("jobs.claim: outage over")
            assert proc.process.returncode is None, proc.log
            assert await proc.stop() == 0, proc.log
        log = proc.log
    assert log.count("jobs.claim: outage started") == 1, log  # one line per outage, not per retry
    assert "stopped unexpectedly" not in log and "Traceback" not in log, log
    await refunding.assert_each_refunded_exactly_once(rt, [before, during])


async def test_a_worker_killed_mid_refund_has_its_refund_taken_over_within_about_a_lease(
    settings: Settings, rt: Runtime, tmp_path: Path
) -> None:
    """A worker SIGKILLed while its refund waits on the gateway: while it lived, its heartbeat
    kept the short lease, so nobody else ran the refund; once dead, another worker does it within
    about one lease (1 s here), not the minute the fixed lease used to cost."""
    lease = 1.0
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    (order,) = await refunding.paid_orders(rt, screening, 1)
    web = replace(settings, inline_worker=False)
    async with (
        running(web) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client,
    ):
        # The slow worker's gateway takes 60 s per call, and it waits for the answer.
        slow = refunding.worker(
            settings, tmp_path / "slow.log", SEATMAP_JOB_LEASE=str(lease),
            SEATMAP_SIMULATED_LATENCY="60", SEATMAP_REFUND_TIMEOUT="120",
        )  # fmt: skip
        async with slow as stuck:
            await _ask_refund(client, order)
            claimed = "SELECT count(*) FROM jobs WHERE kind = 'refund' AND status = 'running'"
            await refunding.eventually(lambda: refunding.count(rt, claimed))
            async with refunding.worker(settings, tmp_path / "spare.log", SEATMAP_JOB_LEASE=str(lease)):
                await asyncio.sleep(4 * lease)  # leases renewed meanwhile: the spare takes nothing
                assert await refunding.count(rt, "SELECT max(attempts) FROM jobs WHERE kind = 'refund'") == 1
                assert not await _refund_done(rt, order.id)
                await stuck.kill()
                killed = time.monotonic()
                await refunding.eventually(lambda: _refund_done(rt, order.id), within=30)
                window = time.monotonic() - killed
    # lease + the spare's poll (0.2 s) + the refund itself; generous for a loaded machine.
    print(f"refund done {window:.2f}s after the worker was killed (lease {lease:.0f}s)")
    assert window < (lease + 2.0) * TIMEOUT_FACTOR, f"refund done {window:.2f}s after the kill"
    await refunding.assert_each_refunded_exactly_once(rt, [order])
