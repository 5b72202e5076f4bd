"""Demo data: a small cinema chain in Jakarta and Bandung, a week of screenings, three users.

`seatmap serve` in dev mode loads it into an empty database so the product has something to
show on first start; `seatmap demo` loads it on demand. It goes through the same code as the
admin API (`auditoriums.insert_auditorium` validates and normalises every layout), and it only
ever loads into an empty catalog: one transaction under an advisory lock checks and loads, so
running it twice, or from several processes starting at once, leaves exactly one copy.

The next shows of the biggest cinema hall start part sold (tickets in PostgreSQL, the truth
the live map is rebuilt from), and on every start (`hold_some`) demo buyers hold seats on them
and on the arena, as live holds in Redis made through `Holds.create`, so a first visitor sees
seats turn from held to free as those holds lapse, like a real evening.
"""

from __future__ import annotations

import logging
import secrets
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from seatmap.accounts import scope, users
from seatmap.accounts.auth import Principal, Role
from seatmap.catalog.auditoriums import insert_auditorium
from seatmap.catalog.layouts import GaArea, Layout, LayoutSpec
from seatmap.catalog.scheduling import CLEANING
from seatmap.composition import open_runtime
from seatmap.db import Pool
from seatmap.errors import EmailTaken, SeatmapError
from seatmap.live.protocol import BestAvailable
from seatmap.settings import Settings

log = logging.getLogger("seatmap.demo")

# (role, email, password): printed by `seatmap serve` so a visitor can log in at once.
ACCOUNTS: Final[tuple[tuple[Role, str, str], ...]] = (
    ("admin", "admin@seatmap.local", "seatmap-admin"),
    ("staff", "staff@seatmap.local", "seatmap-staff"),
    # Seed 004's organizer: runs the first cinema (halls, screenings, blocks), nothing else.
    ("organizer", "organizer@seatmap.local", "seatmap-organizer"),
    ("customer", "customer@seatmap.local", "seatmap-customer"),
)
DEMO_LOCK: Final = 0x5EA7_DE30
TIMEZONE: Final = "Asia/Jakarta"
DAYS: Final = 7
FIRST_SHOW: Final = time(10, 0)
LAST_START: Final = time(22, 0)
PRICES: Final[dict[str, int]] = {"standard": 50_000, "premium": 75_000, "vip": 120_000}
WEEKEND_PRICES: Final[dict[str, int]] = {"standard": 60_000, "premium": 90_000, "vip": 150_000}
EVENT_PRICES: Final[dict[str, int]] = {"standard": 250_000, "vip": 750_000}


def _rows(*groups: tuple[int, str]) -> list[str]:
    """Repeat row patterns: `_rows((3, "SS_SS"), (1, ""))` -> three seat rows, then a walkway."""
    return [pattern for count, pattern in groups for _ in range(count)]


# 24 rows of 26 seats (6 | 14 | 6, aisles as gaps) = 624 seats; a cross aisle after row L,
# wheelchair spaces with companion seats in the front row, premium rows at the back.
PREMIERE: Final = LayoutSpec(
    rows=_rows(
        (1, "WCSSSS_SSSSSSSSSSSSSS_SSSSCW"),
        (11, "SSSSSS_SSSSSSSSSSSSSS_SSSSSS"),
        (1, ""),
        (8, "SSSSSS_SSSSSSSSSSSSSS_SSSSSS"),
        (4, "PPPPPP_PPPPPPPPPPPPPP_PPPPPP"),
    )
)
# 12 rows of 20 = 240 seats, two premium rows.
STUDIO_MEDIUM: Final = LayoutSpec(
    rows=_rows((1, "WCSS_SSSSSSSSSSSS_SSCW"), (9, "SSSS_SSSSSSSSSSSS_SSSS"), (2, "PPPP_PPPPPPPPPPPP_PPPP"))
)
# A narrower front (stadium seating): 188 seats.
STUDIO_STADIUM: Final = LayoutSpec(
    rows=_rows(
        (2, "__SSSSS_SSSSS__"),
        (1, "WCSSSSS_SSSSSCW"),
        (9, "SSSSSSS_SSSSSSS"),
        (2, "PPPPPPP_PPPPPPP"),
    )
)
# Recliner pairs: 6 rows of 8 = 48 vip seats.
VELVET: Final = LayoutSpec(rows=_rows((6, "VV_VV__VV_VV")))
# 11 rows of 16 = 176 seats.
STUDIO_SMALL: Final = LayoutSpec(
    rows=_rows((1, "WCSSS_SSSSSS_SSSCW"), (8, "SSSSS_SSSSSS_SSSSS"), (2, "PPPPP_PPPPPP_PPPPP"))
)
# Concert hall: a 300-person standing floor and a seated vip balcony (3 rows of 12).
CONCERT: Final = LayoutSpec(
    rows=_rows((2, ""), (3, "VVVVVV_VVVVVV")),
    ga=[GaArea(name="Festival floor", capacity=300, category="standard")],
)
# An arena: 50 rows of 100 = 5,000 seats (20 | 60 | 20), five vip rows at the front, so the
# product shows how a large hall looks and behaves (the map draws it on a canvas).
ARENA: Final = LayoutSpec(
    rows=_rows(
        (5, "V" * 20 + "_" + "V" * 60 + "_" + "V" * 20),
        (45, "S" * 20 + "_" + "S" * 60 + "_" + "S" * 20),
    )
)


@dataclass(frozen=True)
class Hall:
    name: str
    layout: LayoutSpec
    shows: str  # "movies" or "events"


CINEMAS: Final = (
    (
        "Seatmap Thamrin",
        "Jakarta",
        "Jl. M.H. Thamrin No. 10, Jakarta Pusat",
        (Hall("Premiere 1", PREMIERE, "movies"), Hall("Studio 2", STUDIO_MEDIUM, "movies")),
    ),
    (
        "Seatmap Kemang",
        "Jakarta",
        "Jl. Kemang Raya No. 8, Jakarta Selatan",
        (Hall("Studio 1", STUDIO_STADIUM, "movies"), Hall("Velvet", VELVET, "movies")),
    ),
    (
        "Seatmap Braga",
        "Bandung",
        "Jl. Braga No. 99, Bandung",
        (
            Hall("Studio 1", STUDIO_SMALL, "movies"),
            Hall("Aula Braga", CONCERT, "events"),
            Hall("Arena Braga", ARENA, "events"),
        ),
    ),
)

# (title, kind, minutes, rating, description)
MOVIES: Final = (
    (
        "Pengabdi Setan 2: Communion",
        "movie",
        119,
        "17+",
        "Horor: sebuah keluarga di rumah susun yang terisolasi.",
    ),
    ("Agak Laen", "movie", 119, "13+", "Komedi horor empat sekawan penjaga rumah hantu pasar malam."),
    ("Laskar Pelangi", "movie", 124, "SU", "Sepuluh anak Belitung dan guru yang tak menyerah."),
    ("Dune: Part Two", "movie", 166, "13+", "Paul Atreides unites with the Fremen."),
    ("Inside Out 2", "movie", 96, "SU", "Riley's emotions make room for some new ones."),
    ("Konser Akustik: Senandung Braga", "event", 150, "SU", "An evening of acoustic sets; standing floor."),
)

INSERT_CINEMA: Final = (
    "INSERT INTO cinemas (name, city, timezone, address) VALUES ($1, $2, $3, $4) RETURNING id"
)
INSERT_MOVIE: Final = """
INSERT INTO movies (title, kind, duration_minutes, rating, description)
VALUES ($1, $2, $3, $4, $5) RETURNING id
"""
INSERT_SCREENINGS: Final = """
INSERT INTO screenings (auditorium_id, movie_id, starts_at, ends_at, currency, status)
SELECT hall, movie, starts_at, ends_at, 'IDR', 'scheduled'
FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::timestamptz[])
     AS t (hall, movie, starts_at, ends_at)
"""
INSERT_PRICES: Final = """
INSERT INTO screening_prices (screening_id, category, amount)
SELECT s.id, p.category, p.amount
FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[])
     AS p (hall, starts_at, category, amount)
JOIN screenings s ON s.auditorium_id = p.hall AND s.starts_at = p.starts_at
"""
# The first screenings of the biggest cinema hall start part sold, one nearly sold out, so the
# first map a visitor opens is not empty: (share of its seats sold) for the next three shows.
SOLD_SHARES: Final = (0.96, 0.55, 0.25)
INSERT_SALE: Final = """
INSERT INTO orders (screening_id, channel, sold_by, hold_token, status, currency, total, expires_at,
                    paid_at, seats_published)
VALUES ($1, 'boxoffice', $2, $3, 'paid', 'IDR', $4, now(), now(), true) RETURNING id
"""
INSERT_TICKETS: Final = """
INSERT INTO tickets (code, order_id, screening_id, seat_label, category, price)
SELECT code, $1, $2, seat, category, price
FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[]) AS t (code, seat, category, price)
"""
PRICES_OF: Final = "SELECT category, amount FROM screening_prices WHERE screening_id = $1"
NEXT_SHOWS: Final = """
SELECT s.id FROM screenings s WHERE s.auditorium_id = $1 AND s.starts_at > now()
ORDER BY s.starts_at LIMIT $2
"""


def sold_first(layout: Layout, share: float) -> list[str]:
    """The seats a part-sold show has sold: the best first (middle, two thirds back), as people
    choose, so what is left is the edges and the front. Pure, so it is tested without a database."""
    count = round(len(layout.seats) * share)
    middle_x = (layout.width - 1) / 2
    sweet_y = (layout.height - 1) * 0.66
    ranked = sorted(layout.seats, key=lambda s: (abs(s.x - middle_x) / max(1, layout.width)) ** 2
                    + (abs(s.y - sweet_y) / max(1, layout.height)) ** 2)  # fmt: skip
    return [seat.label for seat in ranked[:count]]


async def _sell_some(conn: Any, hall: int, layout: Layout, staff: int | None) -> int:
    """Box-office sales on the hall's next shows (SOLD_SHARES); the live map is rebuilt from these
    tickets (invariant 5), so nothing else is needed for the seats to show sold."""
    shows = [row["id"] for row in await conn.fetch(NEXT_SHOWS, hall, len(SOLD_SHARES))]
    category = {seat.label: seat.category for seat in layout.seats}
    for screening, share in zip(shows, SOLD_SHARES, strict=False):
        seats = sold_first(layout, share)
        prices = dict(await conn.fetch(PRICES_OF, screening))
        amounts = [prices.get(category[s], 0) for s in seats]
        order = await conn.fetchval(INSERT_SALE, screening, staff, f"demo.{screening}", sum(amounts))
        await conn.execute(
            INSERT_TICKETS, order, screening, [secrets.token_urlsafe(16) for _ in seats], seats,
            [category[s] for s in seats], amounts,
        )  # fmt: skip
    return len(shows)


@dataclass(frozen=True)
class Show:
    hall: int
    movie: int
    starts_at: datetime
    ends_at: datetime
    prices: dict[str, int]


def _round_up(moment: datetime, step: timedelta = timedelta(minutes=15)) -> datetime:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    steps = -(-(moment - midnight) // step)
    return midnight + steps * step


def schedule(
    halls: list[tuple[int, list[str], str]],
    movies: list[tuple[int, str, int]],
    today: date,
    now: datetime,
) -> list[Show]:
    """A week of shows: each hall plays back to back from 10:00, rotating the movies (a concert
    hall has one event a night); shows that already started today are left out.

    `halls` are (id, categories, "movies"|"events"), `movies` (id, kind, minutes). Pure, so the
    no-overlap promise is tested without a database (the constraint would refuse it anyway).
    """
    zone = zoneinfo.ZoneInfo(TIMEZONE)
    films = [(ident, minutes) for ident, kind, minutes in movies if kind == "movie"]
    events = [(ident, minutes) for ident, kind, minutes in movies if kind == "event"]
    shows: list[Show] = []
    for day_index in range(DAYS):
        day = today + timedelta(days=day_index)
        weekend = day.weekday() >= 4  # Friday to Sunday
        for hall_index, (hall, categories, kind) in enumerate(halls):
            if kind == "events":
                program = [(datetime.combine(day, time(19, 30), zone), *events[day_index % len(events)])]
            else:
                program = []
                start = datetime.combine(day, FIRST_SHOW, zone) + timedelta(minutes=15 * (hall_index % 3))
                turn = hall_index + day_index
                while start <= datetime.combine(day, LAST_START, zone):
                    ident, minutes = films[turn % len(films)]
                    program.append((start, ident, minutes))
                    start = _round_up(start + timedelta(minutes=minutes) + CLEANING)
                    turn += 1
            table = EVENT_PRICES if kind == "events" else WEEKEND_PRICES if weekend else PRICES
            for starts_at, ident, minutes in program:
                if starts_at < now:
                    continue
                shows.append(
                    Show(
                        hall=hall,
                        movie=ident,
                        starts_at=starts_at,
                        ends_at=starts_at + timedelta(minutes=minutes) + CLEANING,
                        prices={c: table[c] for c in categories},
                    )
                )
    return shows


async def load(pool: Pool) -> None:
    """Load the demo data unless the catalog already has a cinema; safe to run concurrently."""
    async with pool.acquire() as conn, conn.transaction():
        # Held to the end of this transaction: a second loader waits here, then sees the cinemas.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", DEMO_LOCK)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM cinemas)"):
            log.info("catalog not empty; demo data not loaded")
            return
        organizers: list[int] = []
        for role, email, password in ACCOUNTS:
            try:
                async with conn.transaction():
                    made = await users.create_user(
                        conn,
                        email=email,
                        password=password,
                        name=f"Demo {role}",
                        role=role,
                        verified=True,
                    )
                    if role == "organizer":
                        organizers.append(made)
            except EmailTaken:
                log.info("demo account %s exists already; kept as it is", email)
        halls: list[tuple[int, list[str], str]] = []
        biggest: tuple[int, Layout] | None = None
        for name, city, address, rooms in CINEMAS:
            cinema_id = await conn.fetchval(INSERT_CINEMA, name, city, TIMEZONE, address)
            for room in rooms:
                created = await insert_auditorium(conn, cinema_id, room.name, room.layout)
                halls.append((created.id, created.categories, room.shows))
                if room.shows == "movies" and (
                    biggest is None or len(created.layout.seats) > len(biggest[1].seats)
                ):
                    biggest = (created.id, created.layout)
            if name == CINEMAS[0][0]:
                for organizer in organizers:
                    await scope.set_cinemas(conn, organizer, [cinema_id])
        movies = []
        for title, kind, minutes, rating, description in MOVIES:
            movie_id = await conn.fetchval(INSERT_MOVIE, title, kind, minutes, rating, description)
            movies.append((movie_id, kind, minutes))
        now = await conn.fetchval("SELECT now()")
        today = now.astimezone(zoneinfo.ZoneInfo(TIMEZONE)).date()
        shows = schedule(halls, movies, today, now)
        if not shows:
            return
        await conn.execute(
            INSERT_SCREENINGS,
            [s.hall for s in shows],
            [s.movie for s in shows],
            [s.starts_at for s in shows],
            [s.ends_at for s in shows],
        )
        prices = [
            (s.hall, s.starts_at, category, amount) for s in shows for category, amount in s.prices.items()
        ]
        await conn.execute(INSERT_PRICES, *(list(column) for column in zip(*prices, strict=True)))
        if biggest is not None:
            staff = await conn.fetchval("SELECT id FROM users WHERE role = 'staff' ORDER BY id LIMIT 1")
            await _sell_some(conn, biggest[0], biggest[1], staff)
        log.info(
            "demo data loaded: %d cinemas, %d halls, %d screenings", len(CINEMAS), len(halls), len(shows)
        )


# ---- live holds, made on every start --------------------------------------------------------

# Buyers whose holds a first visitor sees (their passwords are random: nobody logs in as them).
DEMO_BUYERS: Final = tuple(f"buyer{i}@seatmap.local" for i in range(1, 5))
# (cinema, hall, how many of its next shows, seats each buyer holds there: best available)
HELD: Final = (
    ("Seatmap Thamrin", "Premiere 1", 3, (4, 2, 3, 2)),
    ("Seatmap Braga", "Arena Braga", 1, (6, 4, 8, 2)),
)
HALL_ID: Final = """
SELECT a.id FROM auditoriums a JOIN cinemas c ON c.id = a.cinema_id WHERE c.name = $1 AND a.name = $2
"""
BUYER_IDS: Final = "SELECT id FROM users WHERE email = ANY($1::text[]) ORDER BY email"


async def _buyers(pool: Pool) -> list[int]:
    async with pool.acquire() as conn:
        for email in DEMO_BUYERS:
            try:
                await users.create_user(
                    conn, email=email, password=secrets.token_urlsafe(24), name="Demo buyer",
                    role="customer", verified=True,
                )  # fmt: skip
            except EmailTaken:
                pass  # made by an earlier start
        return [row["id"] for row in await conn.fetch(BUYER_IDS, list(DEMO_BUYERS))]


async def hold_some(settings: Settings) -> int:
    """Demo buyers hold the best seats left on the next shows of the biggest hall and the arena;
    returns how many holds were made. Idempotent: a buyer who still holds seats there from an
    earlier start (a hold lasts SEATMAP_HOLD_TTL) is refused with hold_limit and keeps that
    hold; a show with no block of the size left is skipped. Holds cannot be made to last longer
    than any buyer's, so they are made again on the next start."""
    made = 0
    async with open_runtime(settings, "worker") as rt:
        buyers = await _buyers(rt.pool)
        for cinema, hall_name, count, sizes in HELD:
            async with rt.pool.acquire() as conn:
                hall = await conn.fetchval(HALL_ID, cinema, hall_name)
                shows = [row["id"] for row in await conn.fetch(NEXT_SHOWS, hall, count)] if hall else []
            for screening in shows:
                for buyer, size in zip(buyers, sizes, strict=False):
                    who = Principal(user_id=buyer, role="customer", jti="demo", expires_at=2**40)
                    try:
                        await rt.holds.create(who, screening, [], best=BestAvailable(count=size))
                    except SeatmapError as exc:  # hold_limit (held already), not_enough_adjacent, …
                        log.debug("demo hold on screening %d not made: %s", screening, exc.code)
                        continue
                    made += 1
    log.info("demo holds made: %d", made)
    return made
