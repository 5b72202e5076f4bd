"""Reports: what a screening, a day, a cinema or a film sold, from the tickets that record it.

The figures, for one screening or summed over a group of them:

- `capacity`: seats plus GA places of the hall; `blocked`: seats taken out of sale (seat_blocks);
  `sellable` = capacity - blocked;
- `sold`: live tickets now; `held`: seats and GA units in live holds right now, read from the
  live state in Redis (only for screenings not yet over; a past one holds nothing);
- `occupancy`: sold / sellable, in percent with one decimal;
- `gross`: the price of every ticket ever issued (a ticket exists only for a paid order, at the
  box office or on the web); `refunds`: the price of the tickets voided since (a customer's
  refund or a cancellation: the money is returned or on its way, see /api/admin/refunds);
  `net` = gross - refunds. Money that never became tickets (a late or double payment, refunded
  automatically) is in neither;
- each of these money and ticket figures also `by_channel` (web, boxoffice) and `by_category`.

Money is in the screening's currency, integer minor units; a group that spans currencies is
one row per currency. A day is the screening's start date in its cinema's time zone, and
`from`/`to` (dates, inclusive) select screenings by that day. Everything comes from two
aggregate queries (one over screenings, one over tickets grouped by screening, channel,
category and status) and is summed here in `summarize`, a pure function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope
from seatmap.api import INT64_MAX, Param, documented, enum_param, int_param, path_int, query_int, respond
from seatmap.errors import InvalidInput, NotFound
from seatmap.exports import CSV, csv_response, filename, one_batch, wants_csv
from seatmap.live.inventory import Inventory
from seatmap.money import exponent
from seatmap.runtime import runtime

TAGS: Final = ("reports",)
GROUPS: Final = ("day", "cinema", "movie")
Group = Literal["day", "cinema", "movie"]
MAX_SPAN: Final = timedelta(days=366)
_SNAPSHOTS_AT_ONCE: Final = 16


# ---- the figures (pure) -----------------------------------------------------------------------


class Sales(msgspec.Struct, kw_only=True):
    """Tickets and money of one slice (a channel, a category, or everything)."""

    sold: int = 0
    refunded: int = 0  # tickets voided by a refund or a cancellation
    gross: int = 0
    refunds: int = 0
    net: int = 0

    def add(self, live: bool, tickets: int, amount: int) -> None:
        """Count tickets that are live (sold) or were voided (refunded: their price is returned)."""
        self.gross += amount
        if live:
            self.sold += tickets
        else:
            self.refunded += tickets
            self.refunds += amount
        self.net = self.gross - self.refunds


class Figures(msgspec.Struct, kw_only=True):
    """One report row. `key`/`label`: the screening, day, cinema or film it sums (see `group`)."""

    key: str
    label: str
    currency: str
    currency_exponent: int
    screenings: int
    capacity: int
    blocked: int
    sellable: int
    sold: int
    held: int
    occupancy: float  # percent of sellable, one decimal
    gross: int
    refunds: int
    net: int
    refunded: int
    by_channel: dict[str, Sales]
    by_category: dict[str, Sales]


@dataclass(frozen=True)
class ScreeningFacts:
    """What the report needs of one screening besides its tickets."""

    id: int
    title: str
    movie_id: int
    cinema_id: int
    cinema: str
    day: date  # the start date in the cinema's time zone
    currency: str
    capacity: int
    blocked: int
    held: int = 0


@dataclass(frozen=True)
class TicketSum:
    """Tickets of one screening with one channel, category and status, and their prices' sum."""

    screening_id: int
    channel: str
    category: str
    live: bool
    tickets: int
    amount: int


@dataclass
class _Acc:
    label: str
    currency: str
    screenings: int = 0
    capacity: int = 0
    blocked: int = 0
    held: int = 0
    total: Sales = field(default_factory=Sales)
    channels: dict[str, Sales] = field(default_factory=dict)
    categories: dict[str, Sales] = field(default_factory=dict)


def group_key(s: ScreeningFacts, group: Group | Literal["screening"]) -> tuple[str, str]:
    """(key, label) of the row this screening counts in."""
    if group == "day":
        return s.day.isoformat(), s.day.strftime("%a %d %b %Y")
    if group == "cinema":
        return str(s.cinema_id), s.cinema
    if group == "movie":
        return str(s.movie_id), s.title
    return str(s.id), f"{s.title}, {s.cinema}, {s.day.isoformat()}"


def occupancy(sold: int, sellable: int) -> float:
    return round(100 * sold / sellable, 1) if sellable > 0 else 0.0


def summarize(
    screenings: Iterable[ScreeningFacts], tickets: Iterable[TicketSum], group: Group | Literal["screening"]
) -> list[Figures]:
    """Sum screenings and their tickets into rows of `group` (and currency), in key order. Pure."""
    facts = {s.id: s for s in screenings}
    rows: dict[tuple[str, str], _Acc] = {}

    def acc(s: ScreeningFacts) -> _Acc:
        key, label = group_key(s, group)
        found = rows.get((key, s.currency))
        if found is None:
            found = rows[(key, s.currency)] = _Acc(label=label, currency=s.currency)
        return found

    for s in facts.values():
        a = acc(s)
        a.screenings += 1
        a.capacity += s.capacity
        a.blocked += s.blocked
        a.held += s.held
    for t in tickets:
        of = facts.get(t.screening_id)
        if of is None:
            continue
        a = acc(of)
        for sales in (
            a.total,
            a.channels.setdefault(t.channel, Sales()),
            a.categories.setdefault(t.category, Sales()),
        ):
            sales.add(t.live, t.tickets, t.amount)
    return [
        Figures(
            key=key,
            label=a.label,
            currency=currency,
            currency_exponent=exponent(currency),
            screenings=a.screenings,
            capacity=a.capacity,
            blocked=a.blocked,
            sellable=a.capacity - a.blocked,
            sold=a.total.sold,
            held=a.held,
            occupancy=occupancy(a.total.sold, a.capacity - a.blocked),
            gross=a.total.gross,
            refunds=a.total.refunds,
            net=a.total.net,
            refunded=a.total.refunded,
            by_channel=dict(sorted(a.channels.items())),
            by_category=dict(sorted(a.categories.items())),
        )
        for (key, currency), a in sorted(rows.items(), key=lambda item: (_sortable(item[0][0]), item[0][1]))
    ]


def _sortable(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (0, key)


CSV_HEADER: Final = (
    "key", "label", "currency", "screenings", "capacity", "blocked", "sellable", "sold", "held",
    "occupancy_percent", "gross", "refunds", "net", "refunded_tickets",
    "web_sold", "web_gross", "web_net", "boxoffice_sold", "boxoffice_gross", "boxoffice_net",
)  # fmt: skip


def units(amount: int, currency_exponent: int) -> int | float:
    """An amount in whole units of its currency, as a spreadsheet sums it (150000, 12.5)."""
    return amount / 10**currency_exponent if currency_exponent else amount


def csv_rows(rows: Sequence[Figures]) -> list[tuple[Any, ...]]:
    """The report as CSV records: totals and the two channels; categories are in the JSON."""
    out = []
    for f in rows:
        web, box = f.by_channel.get("web", Sales()), f.by_channel.get("boxoffice", Sales())
        e = f.currency_exponent
        out.append((
            f.key, f.label, f.currency, f.screenings, f.capacity, f.blocked, f.sellable, f.sold, f.held,
            f.occupancy, units(f.gross, e), units(f.refunds, e), units(f.net, e), f.refunded,
            web.sold, units(web.gross, e), units(web.net, e),
            box.sold, units(box.gross, e), units(box.net, e),
        ))  # fmt: skip
    return out


# ---- SQL --------------------------------------------------------------------------------------

_FACTS: Final = """
SELECT s.id, m.title, s.movie_id, a.cinema_id, c.name AS cinema, s.currency, s.status,
       (s.starts_at AT TIME ZONE c.timezone)::date AS day, s.ends_at > now() AS live,
       a.seat_count + a.ga_capacity AS capacity,
       (SELECT count(*) FROM seat_blocks b WHERE b.screening_id = s.id) AS blocked
FROM screenings s JOIN movies m ON m.id = s.movie_id
JOIN auditoriums a ON a.id = s.auditorium_id JOIN cinemas c ON c.id = a.cinema_id
"""
ONE_SCREENING: Final = f"{_FACTS} WHERE s.id = $1"
# Screenings whose local start day is in [$1, $2]; the UTC range around it (time zones are
# within ±14 h of UTC) lets the planner use screenings_starts first.
SCREENINGS_BETWEEN: Final = f"""
{_FACTS}
WHERE s.starts_at >= $1::date - interval '1 day' AND s.starts_at < $2::date + interval '2 days'
  AND (s.starts_at AT TIME ZONE c.timezone)::date BETWEEN $1 AND $2
  AND ($3::bigint IS NULL OR a.cinema_id = $3)
  AND ($4::bigint[] IS NULL OR a.cinema_id = ANY($4))
  AND s.status <> 'draft'
"""
TICKET_SUMS: Final = """
SELECT t.screening_id, o.channel, t.category, t.status = 'valid' AS live, count(*) AS tickets,
       sum(t.price)::bigint AS amount
FROM tickets t JOIN orders o ON o.id = t.order_id
WHERE t.screening_id = ANY($1::bigint[])
GROUP BY 1, 2, 3, 4
"""


async def held_now(inventory: Inventory, screening: int) -> int:
    """Seats and GA units in live holds, from the live state (the snapshot's non-sold states)."""
    snap = await inventory.snapshot(screening)
    held = sum(1 for state in snap.seats.values() if state == "held")
    if snap.ga:
        layout = await inventory.layout(screening)
        async with inventory.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT ga_area, count(*) AS n FROM tickets WHERE screening_id = $1 AND ga_area IS NOT NULL"
                " AND status = 'valid' GROUP BY ga_area",
                screening,
            )
        sold = {r["ga_area"]: r["n"] for r in rows}
        held += sum(
            max(0, cap - snap.ga.get(area, cap) - sold.get(area, 0)) for area, cap in layout.areas.items()
        )
    return held


async def gather_facts(inventory: Inventory, rows: Sequence[Any]) -> list[ScreeningFacts]:
    """Screenings' facts, `held` read from Redis for those still to come (16 at a time)."""
    limit = asyncio.Semaphore(_SNAPSHOTS_AT_ONCE)

    async def one(r: Any) -> ScreeningFacts:
        held = 0
        if r["live"] and r["status"] == "scheduled":
            async with limit:
                held = await held_now(inventory, r["id"])
        return ScreeningFacts(
            id=r["id"], title=r["title"], movie_id=r["movie_id"], cinema_id=r["cinema_id"],
            cinema=r["cinema"], day=r["day"], currency=r["currency"], capacity=r["capacity"],
            blocked=r["blocked"], held=held,
        )  # fmt: skip

    return list(await asyncio.gather(*(one(r) for r in rows)))


async def ticket_sums(conn: Any, screenings: list[int]) -> list[TicketSum]:
    rows = await conn.fetch(TICKET_SUMS, screenings)
    return [TicketSum(**dict(r)) for r in rows]


# ---- endpoints --------------------------------------------------------------------------------


class ScreeningReport(msgspec.Struct, kw_only=True):
    screening_id: int
    status: str
    report: Figures


class Report(msgspec.Struct, kw_only=True):
    group: str
    date_from: date
    date_to: date
    rows: list[Figures]


def _day(params: Mapping[str, str], name: str, default: date) -> date:
    raw = params.get(name) or None
    if raw is None:
        return default
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{name!r} must be a date, YYYY-MM-DD.", path=f"$.{name}") from None


def report_range(params: Mapping[str, str], today: date) -> tuple[date, date]:
    """`from`/`to` (inclusive): by default the 30 days either side of today, or 60 days from
    `from` (or up to `to`); at most 366 days. Pure."""
    if params.get("from") or not params.get("to"):
        start = _day(params, "from", today - timedelta(days=30))
        end = _day(
            params, "to", start + timedelta(days=60) if params.get("from") else today + timedelta(days=30)
        )
    else:
        end = _day(params, "to", today)
        start = end - timedelta(days=60)
    if end < start:
        raise InvalidInput("'to' is before 'from'.", path="$.to")
    if end - start > MAX_SPAN:
        raise InvalidInput("A report spans at most 366 days.", path="$.to")
    return start, end


@documented(
    "One screening's report: seats sold, held now, blocked, occupancy, gross, refunds and net, by"
    " channel and category; `Accept: text/csv` for CSV",
    responses={200: ScreeningReport, 404: None},
    auth="admin",
    scope="cinema",
    tags=TAGS,
    also=(CSV,),
)
async def screening_report(request: Request) -> Response:
    who = await scope.require_scoped(request)
    screening_id = path_int(request, "id")
    rt = runtime(request)
    async with rt.pool.acquire() as conn:
        row = await conn.fetchrow(ONE_SCREENING, screening_id)
        if row is None:
            raise NotFound("No such screening.")
        scope.check_cinema(who, row["cinema_id"])
        sums = await ticket_sums(conn, [screening_id])
    facts = await gather_facts(rt.holds.inventory, [row])
    (figures,) = summarize(facts, sums, "screening")
    if wants_csv(request):
        return csv_response(
            filename("report-screening", screening_id), CSV_HEADER, one_batch(csv_rows([figures]))
        )
    return respond(ScreeningReport(screening_id=screening_id, status=row["status"], report=figures))


@documented(
    "Sales per day (in each cinema's time zone), cinema or film over screenings starting from"
    " `from` to `to` (dates, inclusive; default the 30 days either side of today); `Accept:"
    " text/csv` for CSV",
    query=(
        enum_param("group", GROUPS),
        Param(name="from", schema={"type": "string", "format": "date"}),
        Param(name="to", schema={"type": "string", "format": "date"}),
        int_param("cinema_id", 1, INT64_MAX),
    ),
    responses={200: Report},
    auth="admin",
    scope="cinema",
    tags=TAGS,
    also=(CSV,),
)
async def grouped_report(request: Request) -> Response:
    """An organizer's report covers its own cinemas; naming another cinema is 403."""
    who = await scope.require_scoped(request)
    params = request.query_params
    group = params.get("group") or "day"
    if group not in GROUPS:
        raise InvalidInput(f"group must be one of {', '.join(GROUPS)}.", path="$.group")
    start, end = report_range(params, datetime.now(UTC).date())
    cinema = query_int(request, "cinema_id", 0, minimum=1, maximum=INT64_MAX) or None
    if cinema is not None:
        scope.check_cinema(who, cinema)
    rt = runtime(request)
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(SCREENINGS_BETWEEN, start, end, cinema, scope.filter_ids(who))
        sums = await ticket_sums(conn, [r["id"] for r in rows])
    facts = await gather_facts(rt.holds.inventory, rows)
    figures = summarize(facts, sums, group)  # type: ignore[arg-type]
    if wants_csv(request):
        name = filename("report", group, start.isoformat(), end.isoformat())
        return csv_response(name, CSV_HEADER, one_batch(csv_rows(figures)))
    return respond(Report(group=group, date_from=start, date_to=end, rows=figures))


routes: list[BaseRoute] = [
    Route("/admin/reports", grouped_report, methods=["GET"]),
    Route("/admin/reports/screenings/{id:int}", screening_report, methods=["GET"]),
]
