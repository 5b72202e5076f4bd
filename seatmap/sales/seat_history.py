"""Seat history: who held, sold, refunded, checked in or blocked each seat of a screening, and when.

Nothing here is a new record: the history is read from the rows the system already writes,
each event naming where it comes from (`source`):

- `orders`: a web order made from a hold (`held`: the seat held for payment, by the buyer), its
  payment (`sold`, by the buyer or, at the box office, the cashier), or its closing unpaid
  (`released`, detail `expired` or `cancelled`);
- `tickets`: a ticket voided (`refunded`, by whoever asked for the refund, detail its reason; a
  cancellation's refund names the admin who cancelled) and checked in (`checked_in`, by the
  door staff, at the gate);
- `blocks`: a seat taken out of sale (`blocked`, by the admin, detail the reason);
- `live`: the recent changes of the live seat map (Redis's capped recovery log, the last
  SEATMAP_LIVE_LOG_LENGTH changes): `held`, `free`, `sold`, `blocked` with no person, since
  the live state does not record who.

Not recorded anywhere, hence not shown: who held a seat that never became an order (only the
`live` log has the hold, without its owner, and only while it is recent), when and by whom a
seat was unblocked (the block's row is deleted), and who cancelled a pending order.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.api import Param, documented, path_int, respond
from seatmap.errors import InvalidInput, NotFound
from seatmap.exports import CSV, csv_response, filename, one_batch, wants_csv
from seatmap.live.inventory import Inventory
from seatmap.runtime import runtime

TAGS: Final = ("reports",)


class SeatEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    seat: str
    at: datetime
    event: str  # held | sold | released | refunded | checked_in | blocked | free (live only)
    source: str  # orders | tickets | blocks | live
    order_id: int | None = None
    channel: str | None = None
    by: str | None = None  # the person's email, where recorded
    gate: str | None = None
    detail: str | None = None


class SeatHistory(msgspec.Struct, kw_only=True):
    """`now`: every seat that is not free, with its live state; `events`: seat by seat, in time order."""

    screening_id: int
    timezone: str  # the cinema's, for showing the times as its staff read them
    now: dict[str, str]
    events: list[SeatEvent]


_LINES: Final = """
FROM order_lines l JOIN orders o ON o.id = l.order_id
LEFT JOIN users bu ON bu.id = o.user_id LEFT JOIN users sb ON sb.id = o.sold_by
WHERE o.screening_id = $1 AND l.seat_label IS NOT NULL
"""
HISTORY: Final = f"""
SELECT * FROM (
    SELECT l.seat_label AS seat, o.created_at AS at, 'held' AS event, 'orders' AS source, o.id AS order_id,
           o.channel, bu.email AS by, NULL::text AS gate, NULL::text AS detail
    {_LINES} AND o.channel = 'web'
    UNION ALL
    SELECT l.seat_label, o.paid_at, 'sold', 'orders', o.id, o.channel, coalesce(bu.email, sb.email),
           NULL, NULL
    {_LINES} AND o.paid_at IS NOT NULL
    UNION ALL
    SELECT l.seat_label, o.closed_at, 'released', 'orders', o.id, o.channel, bu.email, NULL, o.status
    {_LINES} AND o.paid_at IS NULL AND o.closed_at IS NOT NULL
    UNION ALL
    SELECT t.seat_label, t.voided_at, 'refunded', 'tickets', t.order_id, o.channel, ru.email, NULL, r.reason
    FROM tickets t JOIN orders o ON o.id = t.order_id
    LEFT JOIN LATERAL (SELECT reason, requested_by FROM refunds
                       WHERE order_id = t.order_id AND closes_order ORDER BY id LIMIT 1) r ON true
    LEFT JOIN users ru ON ru.id = r.requested_by
    WHERE t.screening_id = $1 AND t.seat_label IS NOT NULL AND t.voided_at IS NOT NULL
    UNION ALL
    SELECT t.seat_label, t.checked_in_at, 'checked_in', 'tickets', t.order_id, o.channel, cu.email,
           t.checked_in_gate, NULL
    FROM tickets t JOIN orders o ON o.id = t.order_id LEFT JOIN users cu ON cu.id = t.checked_in_by
    WHERE t.screening_id = $1 AND t.seat_label IS NOT NULL AND t.checked_in_at IS NOT NULL
    UNION ALL
    SELECT b.seat_label, b.created_at, 'blocked', 'blocks', NULL, NULL, u.email, NULL, nullif(b.reason, '')
    FROM seat_blocks b LEFT JOIN users u ON u.id = b.created_by WHERE b.screening_id = $1
) h
WHERE $2::text IS NULL OR h.seat = $2
"""
TIMEZONE: Final = """
SELECT c.timezone FROM screenings s
JOIN auditoriums a ON a.id = s.auditorium_id JOIN cinemas c ON c.id = a.cinema_id
WHERE s.id = $1
"""


def live_events(entries: list[tuple[int, str]], seat: str | None) -> list[SeatEvent]:
    """The seat changes in recovery-log entries (delta messages), as events. Pure."""
    events = []
    for _, text in entries:
        message = json.loads(text)
        if message.get("type") != "delta":
            continue
        at = datetime.fromtimestamp(message["ts"] / 1000, UTC)
        for change in message.get("changes", []):
            label = change.get("seat")
            if label is None or (seat is not None and label != seat):
                continue
            events.append(SeatEvent(seat=label, at=at, event=change["state"], source="live"))
    return events


def ordered(events: list[SeatEvent]) -> list[SeatEvent]:
    """Seat by seat (as labels sort: row letters, then numbers), each seat's events in time order."""

    def seat_key(label: str) -> tuple[str, int, str]:
        head = label.rstrip("0123456789")
        tail = label[len(head) :]
        return head, int(tail) if tail else -1, label

    return sorted(events, key=lambda e: (seat_key(e.seat), e.at, e.source))


async def read_live(
    inventory: Inventory, screening: int, seat: str | None
) -> tuple[dict[str, str], list[SeatEvent]]:
    snap = await inventory.snapshot(screening)
    entries = await inventory.log_after(inventory.keys(screening), 0)
    now = snap.seats if seat is None else {k: v for k, v in snap.seats.items() if k == seat}
    return now, live_events(entries, seat)


CSV_HEADER: Final = ("seat", "at", "event", "source", "order_id", "channel", "by", "gate", "detail")


@documented(
    "Per-seat status history of a screening (who held, sold, refunded, checked in or blocked each"
    " seat, and when), from what the system records; `?seat=` for one seat; `Accept: text/csv` for CSV",
    query=(Param(name="seat", schema={"type": "string", "maxLength": 32}),),
    responses={200: SeatHistory, 404: None},
    auth="admin",
    scope="cinema",
    tags=TAGS,
    also=(CSV,),
)
async def seat_history(request: Request) -> Response:
    who = await scope.require_scoped(request)
    screening_id = path_int(request, "id")
    seat = request.query_params.get("seat") or None
    if seat is not None and len(seat) > 32:
        raise InvalidInput("seat is at most 32 characters.", path="$.seat")
    rt = runtime(request)
    async with rt.pool.acquire() as conn:
        await scope.check_screening(conn, who, screening_id)
        timezone = await conn.fetchval(TIMEZONE, screening_id)
        if timezone is None:
            raise NotFound("No such screening.")
        rows = await conn.fetch(HISTORY, screening_id, seat)
    now, live = await read_live(rt.holds.inventory, screening_id, seat)
    events = ordered([SeatEvent(**dict(r)) for r in rows] + live)
    if wants_csv(request):
        rows_out = [
            (e.seat, e.at, e.event, e.source, e.order_id, e.channel, e.by, e.gate, e.detail) for e in events
        ]
        return csv_response(
            filename("seat-history", screening_id, seat or ""), CSV_HEADER, one_batch(rows_out)
        )
    return respond(SeatHistory(screening_id=screening_id, timezone=timezone, now=now, events=events))


routes: list[BaseRoute] = [
    Route("/admin/reports/screenings/{id:int}/seats", seat_history, methods=["GET"]),
]
