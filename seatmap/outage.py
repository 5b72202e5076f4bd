"""Riding out an outage: how a background loop waits for PostgreSQL or Redis to come back.

A loop that meets an outage (`errors.outage` says which errors are one: a refused or dropped
connection, a server starting up or shutting down, a timeout) does not die: it waits, with an
exponential back-off and full jitter capped at SEATMAP_OUTAGE_MAX_BACKOFF, and tries again until
the service answers. The worker used to exit within a second of PostgreSQL going away (its claim
loop let ConnectionRefusedError through), and refunds, mail and order expiry stopped with it.

Each loop says so once per outage, not per retry: one warning when it starts, one line when it
ends with how long it lasted; and in the metrics (`seatmap_worker_up`, `..._outage_seconds_total`,
`..._backoffs_total`, by loop). Anything else a loop meets is a bug and still ends it, loudly.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Final

from prometheus_client import Counter, Gauge

from seatmap.errors import outage

log = logging.getLogger("seatmap.outage")

UP: Final = Gauge(
    "seatmap_worker_up",
    "1 while a background loop reaches PostgreSQL and Redis, 0 during an outage it is riding out.",
    ["loop"],
)
OUTAGE_SECONDS: Final = Counter(
    "seatmap_worker_outage_seconds_total",
    "Seconds background loops spent waiting for PostgreSQL or Redis to come back.",
    ["loop"],
)
BACKOFFS: Final = Counter(
    "seatmap_worker_backoffs_total", "Retries of a background loop after an outage error.", ["loop"]
)

FIRST_BACKOFF: Final = 0.1  # seconds before the first retry; doubling from there


def backoff_delay(failures: int, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` failures in a row: uniform in [base/2, base] (full
    jitter, so that many processes do not reconnect in step), base = 0.1 s doubling, at most `cap`."""
    base = min(cap, FIRST_BACKOFF * 2 ** max(0, failures - 1))
    return (rng or random).uniform(base / 2, base)


class Outage:
    """One loop's view of the services it needs: up, or down since when.

    `failed(exc)` returns the pause before the next try for an outage error (and re-raises
    anything else); `ok()` after any success ends the outage, if there was one.
    """

    def __init__(self, loop: str, cap: float) -> None:
        self.loop = loop
        self.cap = cap
        self.failures = 0
        self.since: float | None = None  # monotonic start of the current outage
        self._counted = 0.0  # monotonic moment up to which its seconds were counted
        UP.labels(loop).set(1)

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        if outage(exc) is None:
            raise exc
        now = time.monotonic()
        if self.since is None:
            self.since = self._counted = now
            UP.labels(self.loop).set(0)
            log.warning("%s: outage started, backing off (at most %.1fs between tries): %r",
                        self.loop, self.cap, exc)  # fmt: skip
        OUTAGE_SECONDS.labels(self.loop).inc(now - self._counted)
        self._counted = now
        self.failures += 1
        BACKOFFS.labels(self.loop).inc()
        return backoff_delay(self.failures, self.cap)

    def ok(self) -> None:
        if self.since is None:
            return
        now = time.monotonic()
        OUTAGE_SECONDS.labels(self.loop).inc(now - self._counted)
        log.info("%s: outage over after %.1fs (%d retries)", self.loop, now - self.since, self.failures)
        self.since = None
        self.failures = 0
        UP.labels(self.loop).set(1)
