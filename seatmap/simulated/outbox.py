"""The simulated gateway's webhook outbox: every event is delivered until the merchant takes it.

A real gateway keeps an event until the merchant answers 2xx, retrying with back-off for days
and across its own restarts. So does this one: `decide` writes the events in the same
statement as the buyer's decision (`simulated_webhooks`, sql/0008), and they leave from
there. With no configured delay they are delivered at once, before the buyer's page answers;
with `SEATMAP_SIMULATED_WEBHOOK_DELAY` (late confirmations), or when the merchant did not take
them, a pump in every process that opened the gateway claims the due ones (SKIP LOCKED, with a
lease, so a process that dies mid-delivery only delays them) and tries again. A payment's events
leave in the order the gateway wrote them, each only after the one before was taken.

The lease is short (`LEASE`, 5 s) and renewed by a heartbeat every third of it for the events
this process is delivering, however long the merchant takes to answer: a process killed between
the buyer's decision and the webhook delays the confirmation by about a lease, not the minute
the lease used to be. The same heartbeat marks taken events delivered. A database outage is
ridden out (outage.py): the pump backs off and carries on, and an event whose outcome could not
be written comes due again when its lease ends.

Delivery goes through one `httpx.AsyncClient` per outbox (kept-alive connections to the few
merchant origins), closed when the gateway closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any, Final

import asyncpg
import httpx
from prometheus_client import Counter

from seatmap.db import Pool
from seatmap.errors import outage
from seatmap.outage import Outage
from seatmap.sales.gateway import SIGNATURE_HEADER, sign

log = logging.getLogger("seatmap.simulated.provider")

_QUICK_RETRIES: Final = (0.2, 0.5, 1.0, 2.0)  # seconds between the tries of one attempt
LEASE: Final = 5.0  # seconds a claimed (or just decided) event is left to its deliverer, renewed
_OUTAGE_BACKOFF: Final = 5.0  # the longest pause of the pump while the database is away
_POLL: Final = 0.25  # seconds between looks for due events when there were none
_MAX_ATTEMPTS: Final = 12  # then it is left undelivered (with its last status), as gateways give up
_TIMEOUT: Final = 10.0  # seconds for each of connect, write, read

deliveries: Final = Counter(
    "seatmap_webhook_deliveries_total",
    "Attempts to deliver a simulated gateway event, by outcome: taken (2xx), refused (3xx/4xx), "
    "failed (5xx or no answer; tried again later), given_up (the last attempt failed too).",
    ["outcome"],
)

CLAIM: Final = """
UPDATE simulated_webhooks w SET due_at = now() + make_interval(secs => $2)
WHERE w.id IN (SELECT id FROM simulated_webhooks WHERE delivered_at IS NULL AND due_at <= now()
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING w.id, w.payment_id, w.url, w.body, w.attempts
"""
RENEW: Final = """
UPDATE simulated_webhooks SET due_at = now() + make_interval(secs => $2)
WHERE id = ANY($1::bigint[]) AND delivered_at IS NULL
"""
TAKEN: Final = """
UPDATE simulated_webhooks w SET delivered_at = now(), last_status = t.status, attempts = w.attempts + 1
FROM unnest($1::bigint[], $2::integer[]) AS t(id, status) WHERE w.id = t.id
"""
# The event that failed counts an attempt; the ones queued behind it wait with it.
NOT_TAKEN: Final = """
UPDATE simulated_webhooks
SET due_at = CASE WHEN attempts + 1 >= $4 AND id = $1 THEN 'infinity'
                  ELSE now() + make_interval(secs => $3) END,
    attempts = attempts + (id = $1)::int,
    last_status = CASE WHEN id = $1 THEN $2 ELSE last_status END
WHERE id = ANY($5::bigint[])
"""


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 30 s doubling, at most an hour."""
    return float(min(30 * 2 ** max(attempts - 1, 0), 3600))


def delivery_outcome(status: int | None, attempts: int) -> str:
    """How an attempt that was not taken ended: the label of `seatmap_webhook_deliveries_total`."""
    if attempts >= _MAX_ATTEMPTS:
        return "given_up"
    return "failed" if status is None or status >= 500 else "refused"


class Outbox:
    def __init__(self, pool: Pool, key: bytes, copies: int) -> None:
        self.pool = pool
        self.key = key
        self.copies = copies  # deliveries of each event at the same moment (a misbehaving gateway)
        # trust_env=False: webhooks go straight to the merchant's URL, as a gateway's do, never
        # through a proxy that happens to be in this process's environment.
        self.client = httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False)
        self._pump: asyncio.Task[None] | None = None
        # Taken events, marked delivered in one statement per pump round rather than one per
        # event on the buyer's path. Lost in a crash, they are delivered once more when their
        # lease ends: a duplicate, which the merchant handles (as it must, from any gateway).
        self._taken: list[tuple[int, int]] = []
        # Events being delivered by this process, by how many deliveries hold each: their leases
        # are renewed by the heartbeat until they are taken or given a later attempt.
        self._holding: dict[int, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.pumping = Outage("webhooks", _OUTAGE_BACKOFF)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._pump_forever(), name="simulated.webhooks"),
            asyncio.create_task(self._heartbeat_forever(), name="simulated.webhooks.lease"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.flush_taken()
        await self.client.aclose()

    async def flush_taken(self) -> None:
        taken, self._taken = self._taken, []
        if taken:
            ids, statuses = zip(*taken, strict=True)
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(TAKEN, list(ids), list(statuses))
            except BaseException:
                self._taken[:0] = taken  # kept (and their leases renewed) for the next try
                raise

    async def heartbeat(self) -> None:
        """Mark taken events delivered, and renew the leases of those still being delivered."""
        await self.flush_taken()
        holding = [event_id for event_id, _ in self._taken] + list(self._holding)
        if holding:
            async with self.pool.acquire() as conn:
                await conn.execute(RENEW, holding, LEASE)

    async def _heartbeat_forever(self) -> None:
        beats = Outage("webhooks.lease", _OUTAGE_BACKOFF)
        while True:
            await asyncio.sleep(LEASE / 3)
            try:
                await self.heartbeat()
            except Exception as exc:
                if outage(exc) is None:
                    log.exception("simulated webhooks: lease renewal failed; trying at the next beat")
                else:
                    beats.failed(exc)  # said once per outage; the next beat tries again
            else:
                beats.ok()

    async def deliver_now(self, url: str, events: list[tuple[int, bytes]]) -> None:
        await self._deliver_in_order(url, [(event_id, body, 0) for event_id, body in events])

    async def _deliver_in_order(self, url: str, events: list[tuple[int, bytes, int]]) -> None:
        ids = [e[0] for e in events]
        for event_id in ids:
            self._holding[event_id] = self._holding.get(event_id, 0) + 1
        try:
            await self._deliver_held(url, events)
        finally:
            for event_id in ids:
                left = self._holding.pop(event_id, 1) - 1
                if left > 0:
                    self._holding[event_id] = left

    async def _deliver_held(self, url: str, events: list[tuple[int, bytes, int]]) -> None:
        for i, (event_id, body, attempts) in enumerate(events):
            statuses = await asyncio.gather(*(self.post(url, body) for _ in range(self.copies)))
            taken = next((s for s in statuses if s is not None and 200 <= s < 300), None)
            if taken is not None:
                self._taken.append((event_id, taken))
                deliveries.labels("taken").inc()
                continue
            status = next((s for s in statuses if s is not None), None)
            deliveries.labels(delivery_outcome(status, attempts + 1)).inc()
            waiting = [e[0] for e in events[i:]]
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(
                        NOT_TAKEN, event_id, status, backoff(attempts + 1), _MAX_ATTEMPTS, waiting
                    )
            except Exception as exc:
                if outage(exc) is None:
                    raise
                # Not recorded: the events come due again when their lease ends, a retry sooner.
                log.warning("webhook %s: failed attempt not recorded: %r", event_id, exc)
            if attempts + 1 >= _MAX_ATTEMPTS:
                log.error("webhook %s to %s given up after %d attempts", event_id, url, attempts + 1)
            return

    async def post(self, url: str, body: bytes) -> int | None:
        """POST one signed event, tried again at once on network errors and 5xx; the last status."""
        status: int | None = None
        for pause in (*_QUICK_RETRIES, None):
            headers = {
                SIGNATURE_HEADER: sign(self.key, body, int(time.time())),
                "content-type": "application/json",
            }
            try:
                response = await self.client.post(url, content=body, headers=headers)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                log.warning("webhook to %s failed: %r", url, exc)
            else:
                status = response.status_code
                if status < 500:
                    if status >= 300:
                        log.warning("webhook to %s refused: %s %r", url, status, response.content[:200])
                    return status
            if pause is None:
                break
            await asyncio.sleep(pause)
        return status

    async def _pump_forever(self) -> None:
        while True:
            pause = _POLL
            try:
                if await self.pump_once():
                    pause = 0.0
            except Exception as exc:
                if outage(exc) is not None:
                    pause = self.pumping.failed(exc)  # said once per outage, backing off
                else:
                    log.exception("simulated webhooks: pump failed; trying again in 5 s")
                    pause = 5.0
            else:
                self.pumping.ok()
            await asyncio.sleep(pause)

    async def pump_once(self, limit: int = 50) -> int:
        """Claim the due events and try each once, payment by payment (in order within one)."""
        await self.flush_taken()
        async with self.pool.acquire() as conn:
            claimed: list[Any] = await conn.fetch(CLAIM, limit, LEASE)
        if not claimed:
            return 0
        by_payment = itertools.groupby(
            sorted(claimed, key=lambda r: (r["payment_id"], r["id"])), lambda r: r["payment_id"]
        )
        await asyncio.gather(
            *(
                self._deliver_in_order(rows[0]["url"], [(r["id"], r["body"], r["attempts"]) for r in rows])
                for rows in ([*group] for _, group in by_payment)
            )
        )
        return len(claimed)
