"""`seatmap worker`: the process that does the work nobody waits for in a request.

- Jobs from the outbox (jobs.py), several at once: refunds (refunds.py), notifications
  (notifications.py), the live-map half of a cancellation (cancellations.py), mail
  (mail.py: sent by SMTP when `SEATMAP_SMTP_URL` is set) and webhooks to integrators (webhooks.py).
- Housekeeping every SEATMAP_JOB_POLL_INTERVAL: pending orders past their payment window
  become `expired` and their holds are released (orders.expire_lapsed); money checkout marked
  for refund without a refund yet gets one (a safety net: checkout queues it itself).

It runs until SIGTERM or SIGINT, then finishes the jobs it is running, gives back the ones it
claimed but had not started, and exits cleanly. A worker killed with SIGKILL loses nothing:
its jobs come due again when their lease runs out (SEATMAP_JOB_LEASE, a few seconds). PostgreSQL
or Redis going away is no crash: every loop backs off and carries on when they are back, saying
so once per outage in the log and in `seatmap_worker_up` (outage.py). Background tasks are
named and watched: if
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

import prometheus_client

from seatmap import jobs, mail
from seatmap.composition import open_runtime
from seatmap.errors import RETRYABLE, outage
from seatmap.outage import Outage
from seatmap.runtime import Runtime, urls
from seatmap.sales import alerts, cancellations, notifications, orders, refunds, webhooks
from seatmap.settings import Settings

log = logging.getLogger("seatmap.worker")


def handlers(rt: Runtime, sender: webhooks.Sender | None = None) -> dict[str, jobs.Handler]:
    """The job kinds and what runs them; `sender` delivers webhooks (one per worker, which closes it)."""
    webhook_sender = sender if sender is not None else webhooks.Sender(rt)  # makes no client until used

    async def refund(job: jobs.Job) -> None:
        await refunds.run_refund(rt, job)

    async def notify(job: jobs.Job) -> None:
        await notifications.deliver(rt, job)

    async def cancelled(job: jobs.Job) -> None:
        await cancellations.run_live_cancel(rt, job)

    async def send_mail(job: jobs.Job) -> None:
        await mail.send(rt, job)

    async def alert(job: jobs.Job) -> None:
        await alerts.deliver(rt, job)

    return {
        webhooks.JOB: webhook_sender.deliver,
        refunds.JOB: refund,
        notifications.JOB: notify,
        cancellations.JOB: cancelled,
        mail.JOB: send_mail,
        alerts.JOB: alert,
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
    """A round every poll interval; an outage is said once (outage.py), other errors each time."""
    down = Outage("housekeeping", rt.settings.outage_max_backoff)
    while not stop.is_set():
        try:
            await housekeeping_once(rt)
        except RETRYABLE as exc:
            if outage(exc) is not None:
                down.failed(exc)
            else:
                log.warning("housekeeping failed, retrying: %s", exc)
        else:
            down.ok()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rt.settings.job_poll_interval)


@contextlib.asynccontextmanager
async def background(
    rt: Runtime, *, concurrency: int | None = None
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the jobs and the housekeeping in this process until it stops; yields the tasks, watched.

    A task added to the list is awaited on leaving too. On leaving, the process is stopping
    (`rt.state.stopping`), and this waits for the running jobs to finish.
    """
    assert rt.settings.database_url is not None
    policy = jobs.policy_from(rt.settings)
    if concurrency is not None:
        policy = replace(policy, concurrency=concurrency)
    sender = webhooks.Sender(rt)
    worker = jobs.Worker(rt.pool, rt.settings.database_url, handlers(rt, sender), policy)
    stop = rt.state.stopping
    tasks = [
        asyncio.create_task(worker.run(stop), name="jobs.worker"),
        asyncio.create_task(_housekeeping(rt, stop), name="jobs.housekeeping"),
    ]
    for task in tasks:
        rt.state.watch(task)
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.aclose()


async def run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; needs both URLs (the CLI starts embedded servers for missing ones).

    A background task that dies stops the worker: its exception ends `run`, for the supervisor
    to see and restart the process.
    """
    urls(settings)
    server = mail.smtp_server(settings) if settings.smtp_url is not None else None  # bad URL: fail now
    async with open_runtime(settings, "worker") as rt:
        with _stop_on_signals(rt.state.stopping), _metrics_server(settings):
            rt.provider.start()
            async with background(rt):
                log.info(
                    "worker running jobs (%s), %d at once",
                    ", ".join(sorted(handlers(rt))),
                    settings.job_concurrency,
                )
                await _say_how_mail_goes(rt, server)
                await rt.state.until_stopped()
                if rt.state.crash() is None:
                    log.info("worker stopping: letting the current work finish")
        crash = rt.state.crash()
        if crash is not None:
            raise crash
    log.info("worker stopped")


async def _say_how_mail_goes(rt: Runtime, server: mail.SMTPServer | None) -> None:
    """Mail is a job kind (mail.py); say plainly whether this worker can send it."""
    if server is None:
        try:
            async with rt.pool.acquire() as conn:
                pending = await mail.pending_count(conn)
        except Exception as exc:
            if outage(exc) is None:
                raise
            pending = 0  # only a hint; the database went away just after the start
        log.info("mail is stored, not sent: SEATMAP_SMTP_URL is not set (dev mode logs it instead)")
        if pending:
            log.warning("%d mail(s) are pending; set SEATMAP_SMTP_URL to deliver them", pending)
        return
    log.info("worker delivering mail through %s:%d", server.host, server.port)


@contextlib.contextmanager
def _metrics_server(settings: Settings) -> Iterator[None]:
    """The worker's own counters on SEATMAP_WORKER_METRICS_PORT, for Prometheus to scrape.

    prometheus_client's server runs in a thread of its own and reads the same registry the jobs
    count into; a port that cannot be bound fails the start, not the first scrape.
    """
    if not settings.worker_metrics_port:
        yield
        return
    server, thread = prometheus_client.start_http_server(
        settings.worker_metrics_port, addr=settings.worker_metrics_host
    )
    log.info(
        "worker metrics on http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
