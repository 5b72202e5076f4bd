"""`seatmap worker`: the process that does the work nobody waits for in a request.

- Jobs from the outbox (jobs.py), several at once: refunds (refunds.py), notifications
  (notifications.py), the live-map half of a cancellation (cancellations.py), and mail
  (mail.py: sent by SMTP when `SEATMAP_SMTP_URL` is set).
- Housekeeping every SEATMAP_JOB_POLL_INTERVAL: pending orders past their payment window
  become `expired` and their holds are released (orders.expire_lapsed); money checkout marked
  for refund without a refund yet gets one (a safety net: checkout queues it itself).

It runs until SIGTERM or SIGINT, then finishes the jobs it is running, gives back the ones it
claimed but had not started, and exits cleanly. A worker killed with SIGKILL loses nothing:
its jobs come due again when their lease runs out. Background tasks are named and watched: if
one crashes, the worker stops and the exception ends the process, loudly, for the supervisor
to restart it. In dev mode the web process runs the same jobs itself (`background`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Final

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from seatmap import jobs, mail
from seatmap.db import create_pool
from seatmap.errors import ConfigError
from seatmap.live.holds import Holds
from seatmap.live.inventory import Inventory
from seatmap.runtime import Runtime
from seatmap.sales import cancellations, notifications, orders, payments, refunds
from seatmap.settings import Settings

log = logging.getLogger("seatmap.worker")

# A job holds a connection only while it talks to PostgreSQL, not while it waits for the gateway,
# so many jobs share fewer connections (PostgreSQL allows 100 by default, for every process);
# a few more serve the claim loop, lease renewal, housekeeping and mail.
_MAX_JOB_CONNECTIONS: Final = 20
_SPARE_CONNECTIONS: Final = 4


def handlers(rt: Runtime) -> dict[str, jobs.Handler]:
    async def refund(job: jobs.Job) -> None:
        await refunds.run_refund(rt, job)

    async def notify(job: jobs.Job) -> None:
        await notifications.deliver(rt, job)

    async def cancelled(job: jobs.Job) -> None:
        await cancellations.run_live_cancel(rt, job)

    async def send_mail(job: jobs.Job) -> None:
        await mail.send(rt, job)

    return {
        refunds.JOB: refund,
        notifications.JOB: notify,
        cancellations.JOB: cancelled,
        mail.JOB: send_mail,
    }


async def housekeeping_once(rt: Runtime) -> tuple[int, int]:
    """(orders expired, payments given a refund) in one round."""
    expired = await orders.expire_lapsed(rt)
    async with rt.pool.acquire() as conn, conn.transaction():
        adopted = await refunds.refund_unused_payments(conn, rt.settings)
    if adopted:
        log.warning("%d payment(s) marked for refund had no refund yet; queued now", len(adopted))
    return expired, len(adopted)


async def _housekeeping(rt: Runtime, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await housekeeping_once(rt)
        except (TimeoutError, OSError, asyncpg.PostgresError, RedisError) as exc:
            log.warning("housekeeping failed, retrying: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rt.settings.job_poll_interval)


@contextlib.asynccontextmanager
async def background(
    rt: Runtime, stop: asyncio.Event, *, concurrency: int | None = None
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the jobs and the housekeeping in this process until `stop` is set; yields the tasks.

    Needs the live holds (`rt.extras["holds"]`) and the payment provider open. On leaving, sets
    `stop` and waits for the running jobs to finish.
    """
    assert rt.settings.database_url is not None
    policy = jobs.policy_from(rt.settings)
    if concurrency is not None:
        policy = replace(policy, concurrency=concurrency)
    worker = jobs.Worker(rt.pool, rt.settings.database_url, handlers(rt), policy)
    rt.extras["jobs.worker"] = worker
    tasks = [
        asyncio.create_task(worker.run(stop), name="jobs.worker"),
        asyncio.create_task(_housekeeping(rt, stop), name="jobs.housekeeping"),
    ]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; needs both URLs (the CLI starts embedded servers for missing ones)."""
    if settings.database_url is None or settings.redis_url is None:
        raise ConfigError("the worker needs DATABASE_URL and REDIS_URL")
    server = mail.smtp_server(settings) if settings.smtp_url is not None else None  # bad URL: fail now
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        async with contextlib.AsyncExitStack() as stack:
            pool = await create_pool(
                settings.database_url,
                min_size=2,
                max_size=min(settings.job_concurrency, _MAX_JOB_CONNECTIONS) + _SPARE_CONNECTIONS,
            )
            stack.push_async_callback(pool.close)
            redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
            stack.push_async_callback(redis.aclose)
            await redis.ping()
            rt = Runtime(settings=settings, pool=pool, redis=redis)
            inventory = Inventory(
                redis, pool, settings.redis_prefix, settings.recovery_log_length, settings.sweet_row
            )
            rt.extras["holds"] = Holds(inventory, settings)
            await stack.enter_async_context(payments.open_provider(rt))
            tasks = await stack.enter_async_context(background(rt, stop))
            log.info(
                "worker running jobs (%s), %d at once",
                ", ".join(sorted(handlers(rt))),
                settings.job_concurrency,
            )
            if server is None:
                async with pool.acquire() as conn:
                    pending = await mail.pending_count(conn)
                log.info("mail is stored, not sent: SEATMAP_SMTP_URL is not set (dev mode logs it instead)")
                if pending:
                    log.warning("%d mail(s) are pending; set SEATMAP_SMTP_URL to deliver them", pending)
            else:
                log.info("worker delivering mail through %s:%d", server.host, server.port)
            await _watch(stop, tasks)
    log.info("worker stopped")


async def _watch(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Wait for `stop`, then for the tasks to finish; a task that ends before that is a crash."""
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
    crashed = [task for task in done if task is not stopping]
    if crashed and not stop.is_set():
        stop.set()  # the others finish their batch and return
        await asyncio.gather(*tasks, return_exceptions=True)
        task = crashed[0]
        error = task.exception()
        log.error("background task %s stopped unexpectedly", task.get_name(), exc_info=error)
        raise error or RuntimeError(f"background task {task.get_name()} returned while running")
    log.info("worker stopping: letting the current work finish")
    await asyncio.gather(*tasks)


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` while the worker runs; the previous handlers come back after,
    so the CLI can still shut embedded servers down cleanly."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig] or signal.SIG_DFL)
