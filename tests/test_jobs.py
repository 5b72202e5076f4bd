"""The job outbox: jobs run once, retry with back-off, die visibly, survive dead workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from seatmap import jobs
from seatmap.jobs import Job, Policy, Worker
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.support import TIMEOUT_FACTOR

FAST = Policy(concurrency=4, max_attempts=3, backoff=0.05, max_backoff=0.2, lease=5.0, poll_interval=0.2)


@contextlib.asynccontextmanager
async def working(
    rt: Runtime, handlers: dict[str, jobs.Handler], policy: Policy = FAST
) -> AsyncIterator[Worker]:
    assert rt.settings.database_url is not None
    worker = Worker(rt.pool, rt.settings.database_url, handlers, policy)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


async def status_of(rt: Runtime, job_id: int) -> tuple[str, int, str | None]:
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, attempts, last_error FROM jobs WHERE id = $1", job_id)
    assert row is not None
    return row["status"], row["attempts"], row["last_error"]


async def wait_for(predicate: object, within: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within * TIMEOUT_FACTOR):
        while not await predicate():  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.02)


async def test_a_job_enqueued_in_a_rolled_back_transaction_never_runs(rt: Runtime) -> None:
    """Work belongs to its change: if the change rolls back, so does the job."""
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    async with rt.pool.acquire() as conn:
        with contextlib.suppress(RuntimeError):
            async with conn.transaction():
                await jobs.enqueue(conn, "test", {"n": 1})
                raise RuntimeError("the change failed")
        kept = await jobs.enqueue(conn, "test", {"n": 2})
    async with working(rt, {"test": handler}):
        await wait_for(lambda: _done(rt, kept))
    assert ran == [kept]


async def _done(rt: Runtime, job_id: int | None) -> bool:
    assert job_id is not None
    return (await status_of(rt, job_id))[0] == "done"


async def test_notify_wakes_an_idle_worker_at_once(rt: Runtime) -> None:
    """With a 30 s poll, a new job still starts within a fraction of a second of its commit."""
    started: list[float] = []

    async def handler(job: Job) -> None:
        started.append(time.monotonic())

    slow_poll = Policy(poll_interval=30.0, lease=5.0)
    async with working(rt, {"test": handler}, slow_poll):
        await asyncio.sleep(0.3)  # the worker is idle, waiting
        committed = time.monotonic()
        async with rt.pool.acquire() as conn:
            await jobs.enqueue(conn, "test")
        async with asyncio.timeout(2 * TIMEOUT_FACTOR):
            while not started:  # noqa: ASYNC110 (a list the handler appends to)
                await asyncio.sleep(0.01)
    assert started[0] - committed < 0.5 * TIMEOUT_FACTOR


async def test_failures_retry_with_backoff_then_succeed(rt: Runtime) -> None:
    """A job that fails twice runs a third time, later each time, and ends done."""
    calls: list[float] = []

    async def flaky(job: Job) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("gateway timeout")

    async with rt.pool.acquire() as conn:
        job_id = await jobs.enqueue(conn, "flaky", max_attempts=5)
    async with working(rt, {"flaky": flaky}):
        await wait_for(lambda: _done(rt, job_id))
    assert len(calls) == 3
    status, attempts, error = await status_of(rt, job_id or 0)
    assert (status, attempts, error) == ("done", 3, None)
    assert calls[1] - calls[0] >= FAST.backoff / 2


async def test_a_job_that_always_fails_ends_dead_and_can_be_retried(rt: Runtime) -> None:
    """After max_attempts it is dead with its last error; an admin's retry runs it again."""
    fail = True

    async def broken(job: Job) -> None:
        if fail:
            raise ValueError(f"no such order {job.payload['order']}")

    async with rt.pool.acquire() as conn:
        job_id = await jobs.enqueue(conn, "broken", {"order": 7}, max_attempts=3)
    assert job_id is not None
    async with working(rt, {"broken": broken}):
        await wait_for(lambda: _is(rt, job_id, "dead"))
        status, attempts, error = await status_of(rt, job_id)
        assert (status, attempts) == ("dead", 3)
        assert error is not None and "no such order 7" in error
        fail = False
        async with rt.pool.acquire() as conn:
            assert await jobs.retry(conn, job_id)
            assert not await jobs.retry(conn, job_id)  # not dead any more
        await wait_for(lambda: _done(rt, job_id))


async def _is(rt: Runtime, job_id: int, status: str) -> bool:
    return (await status_of(rt, job_id))[0] == status


async def test_two_workers_run_each_of_300_jobs_exactly_once(rt: Runtime) -> None:
    """Workers competing for the same queue never run a job twice and leave none behind."""
    runs: Counter[int] = Counter()

    async def handler(job: Job) -> None:
        await asyncio.sleep(random.uniform(0, 0.005))
        runs[job.payload["n"]] += 1

    async with rt.pool.acquire() as conn, conn.transaction():
        for n in range(300):
            await jobs.enqueue(conn, "count", {"n": n})
    async with working(rt, {"count": handler}), working(rt, {"count": handler}):
        await wait_for(lambda: _all_done(rt), within=20)
    assert runs == Counter(range(300))


async def _all_done(rt: Runtime) -> bool:
    async with rt.pool.acquire() as conn:
        left: int = await conn.fetchval("SELECT count(*) FROM jobs WHERE status <> 'done'")
    return left == 0


async def test_a_dead_workers_job_is_picked_up_after_its_lease(rt: Runtime) -> None:
    """A worker killed mid-job holds it only until its lease runs out; then another runs it."""
    async with rt.pool.acquire() as conn:
        job_id = await jobs.enqueue(conn, "test")
        # A worker claims it with a 1 s lease, then dies (it never reports back).
        await conn.execute(
            "UPDATE jobs SET status = 'running', attempts = 1, locked_by = 'dead-worker',"
            " locked_until = now() + interval '1 second' WHERE id = $1",
            job_id,
        )
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.attempts)

    async with working(rt, {"test": handler}):
        await asyncio.sleep(0.5)
        assert ran == []  # still leased
        await wait_for(lambda: _done(rt, job_id))
    assert ran == [2]


async def test_a_worker_whose_lease_renewer_dies_stops_with_its_error(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When renewing leases fails, the worker gives its running job back and stops with that
    error, instead of working on while the lease lapses and another worker runs the job again."""
    started, released = asyncio.Event(), asyncio.Event()

    async def endless(job: Job) -> None:
        started.set()
        await released.wait()  # a long job: it runs until given back (or the test ends)

    # The renewal statement fails in PostgreSQL (as a dropped connection or a bug would).
    monkeypatch.setattr(jobs, "_RENEW", "SELECT $1::bigint[], $2::text, $3::float8 / 0")
    async with rt.pool.acquire() as conn:
        job_id = await jobs.enqueue(conn, "endless")
    worker = Worker(rt.pool, rt.settings.database_url or "", {"endless": endless}, replace(FAST, lease=0.6))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(started.wait(), 5 * TIMEOUT_FACTOR)
        await asyncio.wait([running], timeout=5 * TIMEOUT_FACTOR)
        assert running.done(), "the worker runs on without renewing its leases"
        assert isinstance(running.exception(), asyncpg.DivisionByZeroError)
    finally:
        stop.set()
        released.set()
        await asyncio.gather(running, return_exceptions=True)
    assert await status_of(rt, job_id or 0) == ("queued", 0, None)


async def test_stopping_finishes_running_jobs(rt: Runtime) -> None:
    """On stop (SIGTERM), a job in progress completes and is recorded as done."""
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.5)

    async with rt.pool.acquire() as conn:
        job_id = await jobs.enqueue(conn, "slow")
    async with working(rt, {"slow": slow}):
        await asyncio.wait_for(started.wait(), 5 * TIMEOUT_FACTOR)
    assert (await status_of(rt, job_id or 0))[0] == "done"


async def test_dedupe_key_makes_enqueue_idempotent(rt: Runtime) -> None:
    """Enqueueing the same keyed job twice (a retried request) makes one job."""
    async with rt.pool.acquire() as conn:
        first = await jobs.enqueue(conn, "refund", {"id": 1}, dedupe_key="refund:1")
        second = await jobs.enqueue(conn, "refund", {"id": 1}, dedupe_key="refund:1")
        count = await conn.fetchval("SELECT count(*) FROM jobs WHERE dedupe_key = 'refund:1'")
    assert first is not None and second is None and count == 1


@pytest.mark.parametrize("attempts", [1, 2, 5, 30])
def test_backoff_grows_and_is_capped(attempts: int) -> None:
    """Back-off doubles per attempt, with jitter, and never exceeds the cap."""
    policy = Policy(backoff=1.0, max_backoff=60.0)
    rng = random.Random(attempts)
    delays = [jobs.backoff_seconds(attempts, policy, rng) for _ in range(100)]
    base = min(60.0, 2 ** (attempts - 1))
    assert all(base / 2 <= d <= base for d in delays)
    assert len(set(delays)) > 50  # jittered, so retries of many jobs spread out


async def test_enqueue_many_adds_each_new_job_once_and_wakes_workers(rt: Runtime) -> None:
    """Many jobs in one statement: keyed ones already queued are skipped; every new one runs."""
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.payload["n"])

    async with rt.pool.acquire() as conn:
        await jobs.enqueue(conn, "many", {"n": 0}, dedupe_key="many:0")
        added = await jobs.enqueue_many(
            conn,
            "many",
            [{"n": n} for n in range(5)],
            [f"many:{n}" for n in range(4)] + [None],
            max_attempts=2,
        )
        assert await jobs.enqueue_many(conn, "many", []) == 0
        limits = await conn.fetch("SELECT DISTINCT max_attempts FROM jobs WHERE payload->>'n' <> '0'")
    assert added == 4
    assert [r["max_attempts"] for r in limits] == [2]
    slow_poll = Policy(poll_interval=30.0, lease=5.0)
    async with working(rt, {"many": handler}, slow_poll):
        await wait_for(lambda: _all_done(rt))
    assert sorted(ran) == [0, 1, 2, 3, 4]


def test_policy_comes_from_the_settings(settings: Settings) -> None:
    """SEATMAP_JOB_* settings become the worker's policy."""
    tuned = replace(settings, job_concurrency=3, job_backoff=0.5, job_lease=9.0, job_poll_interval=0.25)
    policy = jobs.policy_from(tuned)
    assert (policy.concurrency, policy.backoff, policy.lease, policy.poll_interval) == (3, 0.5, 9.0, 0.25)
    assert policy.max_attempts == tuned.job_max_attempts


class _Rollback(Exception):
    pass


async def test_a_claim_from_a_long_queue_reads_only_the_jobs_it_takes(rt: Runtime) -> None:
    """With 5,000 jobs due, claiming one reads a handful of rows, not the whole queue."""
    async with rt.pool.acquire() as conn:
        await jobs.enqueue_many(conn, "bulk", [{"n": n} for n in range(5000)])
        await conn.execute("ANALYZE jobs")
        with contextlib.suppress(_Rollback):
            async with conn.transaction():
                # The worker's own claim statement, measured (and undone).
                plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {jobs._CLAIM}", 1, "w", 60.0)
                raise _Rollback

    def rows_read(node: dict[str, Any]) -> int:
        own = int(node["Actual Rows"]) if "Scan" in node["Node Type"] else 0
        return own + sum(rows_read(child) for child in node.get("Plans", []))

    assert rows_read(json.loads(plan)[0]["Plan"]) < 20
