"""`seatmap worker`: the process that does work nobody waits for in a request.

Today that is mail delivery from the outbox, when `SEATMAP_SMTP_URL` is set. Without SMTP
there is nothing for it to do (mails are stored and, in dev mode, logged by the web process),
and it says so instead of pretending: refunds, notifications and order expiry arrive with
later work. Either way it runs until SIGTERM or SIGINT, then lets the current batch finish
and exits cleanly. Background tasks are named and watched: if one crashes, the worker stops
and the exception ends the process, loudly, for the supervisor to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import redis.asyncio as aioredis

from seatmap import mail
from seatmap.db import create_pool
from seatmap.errors import ConfigError
from seatmap.runtime import Runtime
from seatmap.settings import Settings

log = logging.getLogger("seatmap.worker")


async def run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; needs both URLs (the CLI starts embedded servers for missing ones)."""
    if settings.database_url is None or settings.redis_url is None:
        raise ConfigError("the worker needs DATABASE_URL and REDIS_URL")
    server = mail.smtp_server(settings) if settings.smtp_url is not None else None  # bad URL: fail now
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        async with contextlib.AsyncExitStack() as stack:
            pool = await create_pool(settings.database_url, min_size=1, max_size=4)
            stack.push_async_callback(pool.close)
            redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
            stack.push_async_callback(redis.aclose)
            await redis.ping()
            rt = Runtime(settings=settings, pool=pool, redis=redis)
            tasks: list[asyncio.Task[None]] = []
            if server is None:
                async with pool.acquire() as conn:
                    pending = await mail.pending_count(conn)
                log.info(
                    "worker has nothing to do: SEATMAP_SMTP_URL is not set, so mails are stored "
                    "(and shown in the log in dev mode) instead of sent. Refunds, notifications and "
                    "order expiry arrive with later work. Waiting for SIGTERM/SIGINT."
                )
                if pending:
                    log.warning("%d mail(s) are pending; set SEATMAP_SMTP_URL to deliver them", pending)
            else:
                log.info("worker delivering mail through %s:%d", server.host, server.port)
                tasks.append(asyncio.create_task(mail.deliver_forever(rt, stop), name="mail-delivery"))
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
