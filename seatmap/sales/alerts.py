"""Near-sold-out alerts: the people who run a cinema hear once when a screening nearly sells out.

After every sale is shown sold (`settlement.publish_sold`, web and box office alike, and again
by the sweeper after a crash), `check` counts the screening's sold tickets against its sellable
seats (seats and GA units, minus blocked seats) in PostgreSQL, the truth. A crossing of
SEATMAP_NEARLY_SOLD_OUT (default 90%) or of 100% is recorded as one `screening_alerts` row per
screening and kind with `INSERT ... ON CONFLICT DO NOTHING`: of all the processes that see it at
once, exactly one writes the row, and in that transaction it queues one `alert` job per
recipient (enabled admins, and the enabled organizers of the screening's cinema). The
once-ness is PostgreSQL's, so a Redis restart or a second web process never sends it again.
"Sold" means paid tickets, not holds: a hold that lapses would otherwise alert for seats nobody
bought (listings count holds in `few_left`, see catalog/availability.py).

The `alert` job records the notification (`GET /api/notifications`) and mails it, once per
recipient, the way `notify` tells a customer. `CROSSED` is where other modules (webhooks to
integrators: `screening.sold_out`) hear of a crossing, in the transaction that recorded it.
"""

from __future__ import annotations

import contextlib
import math
import zoneinfo
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from seatmap import jobs, mail
from seatmap.db import AnyConnection
from seatmap.runtime import Runtime
from seatmap.sales.notifications import RECORD
from seatmap.settings import Settings

JOB: Final = "alert"
Kind = Literal["screening_nearly_sold_out", "screening_sold_out"]
NEARLY: Final = "screening_nearly_sold_out"
SOLD_OUT: Final = "screening_sold_out"

# Called for each crossing recorded, with (conn, settings, screening_id, kind), inside the
# transaction that recorded it: what a hook writes (an outbox row) commits with the crossing.
CROSSED: list[Callable[[AnyConnection, Settings, int, str], Awaitable[None]]] = []


def crossed(sold: int, sellable: int, threshold: float) -> list[Kind]:
    """The thresholds `sold` of `sellable` has reached, lowest first. Pure.

    Nearly sold out is at least `threshold` of the sellable seats (rounded up: 90% of 48 is 44
    seats); a screening with nothing sellable reaches nothing.
    """
    if sellable <= 0:
        return []
    reached: list[Kind] = []
    if sold >= math.ceil(threshold * sellable - 1e-9):
        reached.append(NEARLY)
    if sold >= sellable:
        reached.append(SOLD_OUT)
    return reached


# Seats and GA units sold (valid tickets, counted on their two partial indexes) and sellable.
TALLY: Final = """
SELECT (SELECT count(*) FROM tickets WHERE screening_id = s.id AND status = 'valid'
          AND seat_label IS NOT NULL)
     + (SELECT count(*) FROM tickets WHERE screening_id = s.id AND status = 'valid'
          AND ga_area IS NOT NULL) AS sold,
       a.seat_count + a.ga_capacity
     - (SELECT count(*) FROM seat_blocks WHERE screening_id = s.id) AS sellable
FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id
WHERE s.id = $1
"""
RECORD_CROSSINGS: Final = """
INSERT INTO screening_alerts (screening_id, kind, sold, sellable)
SELECT $1, kind, $3, $4 FROM unnest($2::text[]) AS kind
ON CONFLICT (screening_id, kind) DO NOTHING
RETURNING kind
"""
KNOWN: Final = "SELECT kind FROM screening_alerts WHERE screening_id = $1"
# Who hears: every enabled admin, and the enabled organizers of the screening's cinema
# (accounts/scope.py's ORGANIZERS_OF, here joined from the screening in the same statement).
RECIPIENTS: Final = """
SELECT u.id FROM users u WHERE u.role = 'admin' AND u.disabled_at IS NULL
UNION
SELECT u.id FROM screenings s
JOIN auditoriums a ON a.id = s.auditorium_id
JOIN organizer_cinemas oc ON oc.cinema_id = a.cinema_id
JOIN users u ON u.id = oc.user_id AND u.role = 'organizer' AND u.disabled_at IS NULL
WHERE s.id = $1
ORDER BY 1
"""
DETAILS: Final = """
SELECT u.email, u.name, s.id AS screening_id, s.starts_at, m.title, c.name AS cinema, c.timezone,
       a.name AS auditorium, x.sold, x.sellable,
       EXISTS (SELECT 1 FROM notifications WHERE dedupe_key = $4) AS told
FROM users u, screening_alerts x
JOIN screenings s ON s.id = x.screening_id
JOIN movies m ON m.id = s.movie_id
JOIN auditoriums a ON a.id = s.auditorium_id
JOIN cinemas c ON c.id = a.cinema_id
WHERE u.id = $1 AND x.screening_id = $2 AND x.kind = $3
"""


def key(kind: str, screening_id: int, user_id: int) -> str:
    """The dedupe key of one recipient's alert (its job's and its notification's)."""
    return f"alert:{kind}:{screening_id}:{user_id}"


async def check(rt: Runtime, screening_id: int) -> list[str]:
    """After a sale: record and queue the alerts of thresholds this screening has now passed.

    Returns the kinds this call recorded (other processes may have recorded the rest). Cheap once
    a screening is sold out: the process remembers the kinds known to be recorded.
    """
    memo = rt.state.alerted
    if (screening_id, SOLD_OUT) in memo:
        return []
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(TALLY, screening_id)
        if row is None:
            return []
        kinds = [k for k in crossed(row["sold"], row["sellable"], rt.settings.nearly_sold_out)
                 if (screening_id, k) not in memo]  # fmt: skip
        if not kinds:
            return []
        async with conn.transaction():
            recorded = [r["kind"] for r in await conn.fetch(
                RECORD_CROSSINGS, screening_id, kinds, row["sold"], row["sellable"]
            )]  # fmt: skip
            if recorded:
                await _queue(conn, rt.settings, screening_id, recorded)
                for hook in CROSSED:
                    for kind in recorded:
                        await hook(conn, rt.settings, screening_id, kind)
        memo.update((screening_id, r["kind"]) for r in await conn.fetch(KNOWN, screening_id))
    return recorded


async def _queue(conn: AnyConnection, settings: Settings, screening_id: int, recorded: list[str]) -> None:
    """One job per recipient and threshold recorded (a sale that jumps from below 90% to sold
    out tells both, each once)."""
    users = [r["id"] for r in await conn.fetch(RECIPIENTS, screening_id)]
    pairs = [(kind, user) for kind in recorded for user in users]
    keys = [key(kind, screening_id, user) for kind, user in pairs]
    payloads = [
        {"kind": kind, "screening_id": screening_id, "user_id": user, "key": k}
        for (kind, user), k in zip(pairs, keys, strict=True)
    ]
    await jobs.enqueue_many(conn, JOB, payloads, keys, max_attempts=settings.job_max_attempts)


def render(kind: str, row: Any) -> tuple[str, str]:
    """(subject, body) of an alert from its DETAILS row. Pure."""
    when = row["starts_at"].astimezone(zoneinfo.ZoneInfo(row["timezone"])).strftime("%A %d %B %Y, %H:%M")
    show = f"{row['title']} at {row['cinema']} ({row['auditorium']}), {when}"
    share = round(100 * row["sold"] / row["sellable"]) if row["sellable"] else 100
    greeting = f"Hello {row['name']}," if row["name"] else "Hello,"
    if kind == SOLD_OUT:
        subject = f"Sold out: {row['title']}"
        text = f"{show} is sold out: all {row['sellable']} sellable seats are sold."
    elif kind == NEARLY:
        subject = f"Nearly sold out: {row['title']}"
        sold = f"{row['sold']} of {row['sellable']} sellable seats sold ({share}%)"
        text = f"{show} is nearly sold out: {sold}."
    else:
        raise ValueError(f"unknown alert kind {kind!r}")
    return subject, f"{greeting}\n\n{text}\n\nScreening {row['screening_id']}.\n\nseatmap\n"


class _ToldMeanwhile(Exception):
    """Another run of the same job recorded it first: undo this run's mail."""


async def deliver(rt: Runtime, job: jobs.Job) -> None:
    """The `alert` job: record the recipient's notification and queue its mail, once."""
    p = job.payload
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(DETAILS, p["user_id"], p["screening_id"], p["kind"], p["key"])
        if row is None or row["told"]:
            return  # the recipient or the screening is gone, or this job ran before
        subject, body = render(p["kind"], row)
        with contextlib.suppress(_ToldMeanwhile):
            async with conn.transaction():
                mail_id = await mail.enqueue(
                    conn, rt.settings, to=row["email"], subject=subject, body=body, user_id=p["user_id"]
                )
                recorded = await conn.fetchval(
                    RECORD, p["user_id"], p["kind"], subject, body, None, p["screening_id"], p["key"], mail_id
                )
                if recorded is None:
                    raise _ToldMeanwhile
