"""The job outbox in PostgreSQL and the loop that works it off.

A change that causes later work writes a job in its own transaction (`enqueue`), so the work is
never lost and never done for a change that rolled back. `Worker` claims due jobs with
`FOR UPDATE SKIP LOCKED` (several workers never take the same job), runs up to `concurrency`
of them at once, and records the outcome:

- success: `done`;
- an exception: back to `queued`, due again after an exponential back-off with jitter, until
  `max_attempts`; then `dead`, with the last error, for an admin to see (`retry` revives it);
  `GiveUp` (trying again cannot help, e.g. a mail server refused the recipient for good): `dead`
  at once;
- the worker dies (kill -9): the claim is a lease (`locked_until`), so the job comes due again
  once the lease runs out; a live worker renews the leases of the jobs it is running, every
  third of a lease (a heartbeat, as procrastinate does). So the lease can be short (a few
  seconds, SEATMAP_JOB_LEASE): a killed worker's refund is taken over within about that,
  not the minute it used to be.

PostgreSQL going away (a restart, a failover) is ridden out, not fatal: every statement of the
loop (claim, renew, record) that meets an outage backs off and tries again (outage.py), and the
LISTEN connection is opened again once the database answers. A job's outcome that cannot be
recorded is tried again for a lease; past that the job runs again elsewhere (handlers are
idempotent).

NOTIFY on commit wakes idle workers at once; they also poll, because a notification can be
missed (a worker that was reconnecting). On stop, a worker finishes what it is running and
gives back what it claimed but had not started.

Handlers must be idempotent: a job can run twice (its worker died after the work but before
recording it). Refunds carry an idempotency key for exactly that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from prometheus_client import Counter

from seatmap.db import AnyConnection, Pool
from seatmap.outage import Outage
from seatmap.settings import Settings

log = logging.getLogger("seatmap.jobs")

CHANNEL: Final = "seatmap_jobs"

outcomes: Final = Counter(
    "seatmap_jobs_total",
    "Job runs by kind and outcome: done, retry (failed, due again later), dead (out of attempts), "
    "lost (another worker took it over meanwhile).",
    ["kind", "outcome"],
)


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    created_at: datetime


Handler = Callable[[Job], Awaitable[None]]


class GiveUp(Exception):
    """Raised by a handler when no retry can succeed: the job is dead now, with this error."""


@dataclass(frozen=True)
class Policy:
    """How a worker behaves; the defaults come from the settings (see `policy_from`)."""

    concurrency: int = 8
    max_attempts: int = 8
    backoff: float = 1.0  # first retry after about this many seconds, doubling each time
    max_backoff: float = 600.0
    lease: float = 5.0  # renewed every third of it while the job runs
    poll_interval: float = 1.0
    outage_backoff: float = 5.0  # the longest pause between tries while the database is away


def policy_from(settings: Settings) -> Policy:
    return Policy(
        concurrency=settings.job_concurrency,
        max_attempts=settings.job_max_attempts,
        backoff=settings.job_backoff,
        max_backoff=settings.job_max_backoff,
        lease=settings.job_lease,
        poll_interval=settings.job_poll_interval,
        outage_backoff=settings.outage_max_backoff,
    )


# The NOTIFY rides in the same statement (one round trip); it is delivered when the
# transaction commits, not before: workers never see an uncommitted job.
_ENQUEUE: Final = """
WITH new AS (
    INSERT INTO jobs (kind, payload, max_attempts, run_at, dedupe_key)
    VALUES ($1, $2, $3, coalesce($4, now()), $5)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
), woken AS (
    SELECT pg_notify($6, $1) FROM new
)
SELECT id, (SELECT count(*) FROM woken) FROM new
"""

# Payloads come as JSON text (one array parameter), keys as a parallel array (NULL: no key).
_ENQUEUE_MANY: Final = """
WITH new AS (
    INSERT INTO jobs (kind, payload, max_attempts, dedupe_key)
    SELECT $1, t.payload::jsonb, $3, t.key FROM unnest($2::text[], $4::text[]) AS t (payload, key)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING 1
), added AS (
    SELECT count(*) AS n FROM new
), woken AS (
    SELECT pg_notify($5, $1) FROM added WHERE n > 0
)
SELECT n, (SELECT count(*) FROM woken) FROM added
"""

# Two index scans that stop after $1 rows each (jobs whose worker died first, then the queue in
# order), instead of one OR over both: that sorted every due job on every claim, so a claim from
# a queue of thousands (a cancellation) cost milliseconds of database time.
_CLAIM: Final = """
WITH stale AS (
    SELECT id FROM jobs WHERE status = 'running' AND locked_until < now()
    ORDER BY locked_until LIMIT $1 FOR UPDATE SKIP LOCKED
), queued AS (
    SELECT id FROM jobs WHERE status = 'queued' AND run_at <= now()
    ORDER BY run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM stale UNION ALL SELECT id FROM queued LIMIT $1
)
UPDATE jobs j
SET status = 'running', attempts = j.attempts + 1, locked_by = $2,
    locked_until = now() + make_interval(secs => $3)
FROM due WHERE j.id = due.id
RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.created_at
"""

_DONE: Final = """
UPDATE jobs SET status = 'done', finished_at = now(), locked_by = NULL, locked_until = NULL, last_error = NULL
WHERE id = $1 AND locked_by = $2 AND status = 'running'
"""

_FAILED: Final = """
UPDATE jobs
SET status = CASE WHEN attempts >= max_attempts OR $5 THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN attempts >= max_attempts OR $5 THEN now() END,
    run_at = now() + make_interval(secs => $3),
    last_error = $4, locked_by = NULL, locked_until = NULL
WHERE id = $1 AND locked_by = $2 AND status = 'running'
RETURNING status
"""

_RENEW: Final = """
UPDATE jobs SET locked_until = now() + make_interval(secs => $3)
WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND status = 'running'
"""

_GIVE_BACK: Final = """
UPDATE jobs SET status = 'queued', attempts = attempts - 1, locked_by = NULL, locked_until = NULL
WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND status = 'running'
"""

_RETRY: Final = """
UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL
WHERE id = $1 AND status = 'dead'
RETURNING id
"""


async def enqueue(
    conn: AnyConnection,
    kind: str,
    payload: Mapping[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = Policy.max_attempts,
) -> int | None:
    """Add a job in the caller's transaction; None if a job with this dedupe key exists already."""
    # A dict: the pool's jsonb codec (db.py) encodes it.
    job_id: int | None = await conn.fetchval(
        _ENQUEUE, kind, dict(payload or {}), max_attempts, run_at, dedupe_key, CHANNEL
    )
    return job_id


async def enqueue_many(
    conn: AnyConnection,
    kind: str,
    payloads: Sequence[Mapping[str, Any]],
    dedupe_keys: Sequence[str | None] | None = None,
    *,
    max_attempts: int = Policy.max_attempts,
) -> int:
    """`enqueue` for many jobs of one kind in one statement (a cancellation makes thousands);
    returns how many were new (keys seen before are skipped)."""
    keys = list(dedupe_keys) if dedupe_keys is not None else [None] * len(payloads)
    assert len(keys) == len(payloads)
    if not payloads:
        return 0
    added: int = await conn.fetchval(
        _ENQUEUE_MANY, kind, [json.dumps(dict(p)) for p in payloads], max_attempts, keys, CHANNEL
    )
    return added


async def retry(conn: AnyConnection, job_id: int) -> bool:
    """Revive a dead job: it runs again from its first attempt. False if it isn't dead."""
    revived = await conn.fetchval(_RETRY, job_id)
    if revived is not None:
        await conn.execute("SELECT pg_notify($1, 'retry')", CHANNEL)
    return revived is not None


# What /metrics shows of the queue (metrics.py reads it at scrape time): the partial indexes on
# queued and dead jobs keep it from reading the done ones, which are most of the table.
_BACKLOG: Final = """
SELECT kind,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       coalesce(extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now())),
                0)::float8 AS oldest_due_seconds
FROM jobs WHERE status IN ('queued', 'dead')
GROUP BY kind ORDER BY kind
"""


@dataclass(frozen=True)
class Backlog:
    """The jobs of one kind not done: an operator's view of whether workers keep up."""

    kind: str
    queued: int  # waiting: due now, or later after a failed attempt
    dead: int  # out of attempts, until an admin retries them
    oldest_due_seconds: float  # how long the longest-waiting due one has been due (0: none)


async def backlog(conn: AnyConnection) -> list[Backlog]:
    """Kinds with queued or dead jobs (a kind with neither is left out)."""
    return [Backlog(**dict(r)) for r in await conn.fetch(_BACKLOG)]


def backoff_seconds(attempts: int, policy: Policy, rng: random.Random | None = None) -> float:
    """Exponential back-off with full jitter: uniform in [base/2, base], base = backoff * 2^(n-1)."""
    base = min(policy.max_backoff, policy.backoff * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(base / 2, base)


class Worker:
    """Claims and runs jobs of the kinds it has handlers for, until `stop` is set."""

    def __init__(self, pool: Pool, dsn: str, handlers: Mapping[str, Handler], policy: Policy) -> None:
        self.pool = pool
        self.dsn = dsn
        self.handlers = dict(handlers)
        self.policy = policy
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self.completed = 0
        self.failed = 0
        self.outage = Outage("jobs.claim", policy.outage_backoff)
        self._renewals = Outage("jobs.lease", policy.outage_backoff)
        self._records = Outage("jobs.record", policy.outage_backoff)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, through database outages (outage.py). If the lease renewer
        dies of anything else, the jobs running are given back and its exception ends `run`:
        without renewals their leases would lapse and another worker would run them a second
        time, while this one carried on as if all were well."""
        listener: Any = None
        renewer = asyncio.create_task(self._renew_leases(stop), name="jobs.renew")
        renewer.add_done_callback(lambda _: self._wake.set())
        try:
            while not stop.is_set():
                if renewer.done():
                    for task in self._running.values():
                        task.cancel()  # `_run` gives the job back
                    raise renewer.exception() or RuntimeError("the lease renewer returned")
                free = self.policy.concurrency - len(self._running)
                try:
                    if listener is None or listener.is_closed():
                        listener = await _listen(self.dsn, self._wake)
                    claimed = await self._claim(free) if free > 0 else []
                except Exception as exc:
                    pause = self.outage.failed(exc)  # anything but an outage goes on up
                    await _first(stop.wait(), asyncio.sleep(pause))
                    continue
                self.outage.ok()
                for job in claimed:
                    if job.id in self._running:
                        continue  # its lease lapsed in an outage and we took it again: still ours
                    task = asyncio.create_task(self._run(job), name=f"jobs.run.{job.kind}.{job.id}")
                    self._running[job.id] = task
                    task.add_done_callback(functools.partial(self._finished, job.id))
                if claimed and len(claimed) == free:
                    continue  # maybe more are due: look again before sleeping
                self._wake.clear()
                await _first(stop.wait(), self._wake.wait(), asyncio.sleep(self.policy.poll_interval))
        finally:
            if self._running:
                log.info("finishing %d running job(s) before stopping", len(self._running))
                await asyncio.gather(*self._running.values(), return_exceptions=True)
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    def _finished(self, job_id: int, _: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._wake.set()  # a slot is free

    async def _claim(self, limit: int) -> list[Job]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_CLAIM, limit, self.name, self.policy.lease)
        jobs = [
            Job(r["id"], r["kind"], r["payload"], r["attempts"], r["max_attempts"], r["created_at"])
            for r in rows
        ]
        unknown = [job for job in jobs if job.kind not in self.handlers]
        if unknown:
            # Another version of the worker may know them; this one gives them back untouched.
            async with self.pool.acquire() as conn:
                await conn.execute(_GIVE_BACK, [job.id for job in unknown], self.name)
        return [job for job in jobs if job.kind in self.handlers]

    async def _run(self, job: Job) -> None:
        try:
            await self.handlers[job.kind](job)
        except asyncio.CancelledError:
            # Given back at once if the database answers; else its lease runs out, as in a crash.
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    await conn.execute(_GIVE_BACK, [job.id], self.name)
            raise
        except Exception as exc:
            self.failed += 1
            delay = backoff_seconds(job.attempts, self.policy)
            error = "".join(traceback.format_exception_only(exc)).strip()[:2000]
            status = await self._record(_FAILED, job.id, self.name, delay, error, isinstance(exc, GiveUp))
            outcomes.labels(job.kind, {"queued": "retry", "dead": "dead"}.get(status, "lost")).inc()
            if status == "dead":
                log.error("job %s #%d is dead after %d attempts: %s", job.kind, job.id, job.attempts, error)
            else:
                log.warning("job %s #%d failed (attempt %d), retry in %.1fs: %s",
                            job.kind, job.id, job.attempts, delay, error)  # fmt: skip
        else:
            self.completed += 1
            await self._record(_DONE, job.id, self.name)
            outcomes.labels(job.kind, "done").inc()

    async def _record(self, statement: str, *args: Any) -> Any:
        """A job's outcome, tried again through an outage for as long as its lease would last:
        after that another worker may have taken the job over, and it runs again there."""
        deadline = asyncio.get_running_loop().time() + self.policy.lease
        while True:
            try:
                async with self.pool.acquire() as conn:
                    result = await conn.fetchval(statement, *args)
            except Exception as exc:
                pause = self._records.failed(exc)
                if asyncio.get_running_loop().time() + pause > deadline:
                    log.warning("job #%s: outcome not recorded during an outage; it will run again", args[0])
                    return None
                await asyncio.sleep(pause)
                continue
            self._records.ok()
            return result

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        """The heartbeat: every third of a lease, push the leases of the running jobs out by one."""
        while not stop.is_set():
            await _first(stop.wait(), asyncio.sleep(self.policy.lease / 3))
            if not self._running:
                continue
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(_RENEW, list(self._running), self.name, self.policy.lease)
            except Exception as exc:
                self._renewals.failed(exc)  # an outage: try again at the next beat
            else:
                self._renewals.ok()


async def _listen(dsn: str, wake: asyncio.Event) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    await conn.add_listener(CHANNEL, lambda *_: wake.set())
    return conn


async def _first(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
