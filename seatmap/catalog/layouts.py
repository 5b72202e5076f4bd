"""Seat layouts: what an admin submits, how it is checked, and the normalised form clients render.

Pure: no I/O. An admin describes an auditorium either as compact rows, one string per row and one
character per seat (`"SSSS_SSSS"`), or as an explicit seat list, plus general-admission (GA)
areas sold by quantity. `normalise` turns either into one `Layout`: every seat with its label,
row, number, grid position and category. That `Layout` is stored, served as is, and is what
holds and tickets refer to (by label), so every rule about a valid layout lives here.

Compact rows:

- rows are labelled A, B, … Z, AA, AB, … top to bottom; seats are numbered from 1, left to right,
  ignoring gaps (`_`), so the label of the 12th seat of row F is `F12`;
- a seat's `x` is its column including gaps and `y` its row index, so gaps render as aisles;
- a row with no seats at all (empty, or only gaps) is a walkway: it takes a `y` but no label, so
  the row letters stay consecutive across a cross aisle;
- characters: `S` standard, `P` premium, `V` vip, `W` a wheelchair space (standard, accessible),
  `C` a companion seat beside it (standard, companion).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from seatmap.errors import InvalidInput

CATEGORIES: Final[tuple[str, ...]] = ("standard", "premium", "vip")
GAP: Final = "_"
# character -> (category, accessible, companion)
SEAT_CHARACTERS: Final[dict[str, tuple[str, bool, bool]]] = {
    "S": ("standard", False, False),
    "P": ("premium", False, False),
    "V": ("vip", False, False),
    "W": ("standard", True, False),
    "C": ("standard", False, True),
}
MAX_SEATS: Final = 10_000
# Columns and rows of the grid: far more than any hall, small enough for any screen to draw.
MAX_SPAN: Final = 1_000
MAX_GA_AREAS: Final = 50
MAX_GA_CAPACITY: Final = 100_000

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Coordinate = Annotated[int, msgspec.Meta(ge=0, lt=MAX_SPAN)]


class Seat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One seat, as submitted in an explicit seat list and as served in every layout."""

    label: Label
    row: Annotated[str, msgspec.Meta(min_length=1, max_length=8)]
    number: Annotated[int, msgspec.Meta(ge=1, le=99_999)]
    x: Coordinate
    y: Coordinate
    category: str = "standard"
    accessible: bool = False
    companion: bool = False


class GaArea(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A general-admission area: standing (or unnumbered) capacity sold by quantity."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    capacity: Annotated[int, msgspec.Meta(gt=0, le=MAX_GA_CAPACITY)]
    category: str = "standard"


class LayoutSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """What an admin submits: `rows` (compact) or `seats` (explicit), plus GA areas."""

    rows: list[str] | None = None
    seats: list[Seat] | None = None
    ga: list[GaArea] = msgspec.field(default_factory=list)


class Layout(msgspec.Struct, kw_only=True):
    """The normalised layout: exactly what clients render.

    `categories` are the categories in use (seats and GA), in the order of `CATEGORIES`; a
    screening needs a price for each. `width` and `height` are the grid size in seat cells.
    """

    seats: list[Seat]
    ga: list[GaArea]
    categories: list[str]
    width: int
    height: int

    @property
    def ga_capacity(self) -> int:
        return sum(area.capacity for area in self.ga)


def row_label(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA, 27 -> AB, 701 -> ZZ, 702 -> AAA (bijective base 26, like spreadsheets)."""
    assert index >= 0
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def parse(raw: Any, path: str = "$.layout") -> Layout:
    """Validate a layout given as plain data (decoded JSON), with errors located under `path`."""
    try:
        spec = msgspec.convert(raw, LayoutSpec)
    except msgspec.ValidationError as exc:
        error = InvalidInput.from_validation(exc)
        inner = error.details.get("path", "$")
        raise InvalidInput(error.message, path=path + inner.removeprefix("$")) from None
    return normalise(spec, path)


def normalise(spec: LayoutSpec, path: str = "$.layout") -> Layout:
    """The one `Layout` for a submission, or `InvalidInput` naming the first problem and its path."""
    if spec.rows is not None and spec.seats is not None:
        raise InvalidInput("Give the layout either as `rows` or as `seats`, not both.", path=path)
    if spec.rows is not None:
        seats, width, height = _from_rows(spec.rows, path)
    else:
        seats = _checked_seats(spec.seats or [], path)
        width = max((seat.x for seat in seats), default=-1) + 1
        height = max((seat.y for seat in seats), default=-1) + 1
    ga = _checked_ga(spec.ga, path)
    if not seats and not ga:
        raise InvalidInput("The layout needs at least one seat or one GA area.", path=path)
    used = {seat.category for seat in seats} | {area.category for area in ga}
    return Layout(
        seats=seats,
        ga=ga,
        categories=[c for c in CATEGORIES if c in used],
        width=width,
        height=height,
    )


def _too_many(path: str) -> InvalidInput:
    return InvalidInput(f"A layout has at most {MAX_SEATS} seats.", path=path)


def _from_rows(rows: list[str], path: str) -> tuple[list[Seat], int, int]:
    if len(rows) > MAX_SPAN:
        raise InvalidInput(f"A layout has at most {MAX_SPAN} rows.", path=f"{path}.rows")
    seats: list[Seat] = []
    labelled = 0
    for y, text in enumerate(rows):
        here = f"{path}.rows[{y}]"
        if len(text) > MAX_SPAN:
            raise InvalidInput(f"A row has at most {MAX_SPAN} columns.", path=here)
        if not text.strip(GAP):
            continue  # a walkway: no seats, no label
        row = row_label(labelled)
        labelled += 1
        number = 0
        for x, char in enumerate(text):
            if char == GAP:
                continue
            kind = SEAT_CHARACTERS.get(char)
            if kind is None:
                raise InvalidInput(
                    f"Row {row} has an unknown seat character {char!r} at column {x + 1}; "
                    f"use {', '.join(SEAT_CHARACTERS)} or {GAP} for a gap.",
                    path=here,
                )
            if len(seats) == MAX_SEATS:
                raise _too_many(here)
            number += 1
            category, accessible, companion = kind
            seats.append(
                Seat(
                    label=f"{row}{number}",
                    row=row,
                    number=number,
                    x=x,
                    y=y,
                    category=category,
                    accessible=accessible,
                    companion=companion,
                )
            )
    return seats, max((len(text) for text in rows), default=0), len(rows)


def _checked_seats(seats: list[Seat], path: str) -> list[Seat]:
    if len(seats) > MAX_SEATS:
        raise _too_many(f"{path}.seats")
    labels: dict[str, int] = {}
    places: dict[tuple[int, int], str] = {}
    for index, seat in enumerate(seats):
        here = f"{path}.seats[{index}]"
        if not seat.label.strip():
            raise InvalidInput("A seat label must not be blank.", path=f"{here}.label")
        if seat.label in labels:
            raise InvalidInput(
                f"Seat label {seat.label!r} is used twice (seats[{labels[seat.label]}] and seats[{index}]).",
                path=f"{here}.label",
            )
        labels[seat.label] = index
        if seat.category not in CATEGORIES:
            raise InvalidInput(
                f"Seat {seat.label} has an unknown category {seat.category!r}; "
                f"known: {', '.join(CATEGORIES)}.",
                path=f"{here}.category",
            )
        if not (0 <= seat.x < MAX_SPAN and 0 <= seat.y < MAX_SPAN):
            raise InvalidInput(
                f"Seat {seat.label} is off the grid at ({seat.x}, {seat.y}); "
                f"x and y must be from 0 to {MAX_SPAN - 1}.",
                path=here,
            )
        if seat.number < 1:
            raise InvalidInput(f"Seat {seat.label} needs a number from 1.", path=f"{here}.number")
        other = places.setdefault((seat.x, seat.y), seat.label)
        if other != seat.label:
            raise InvalidInput(
                f"Seats {other} and {seat.label} are both at ({seat.x}, {seat.y}).", path=f"{here}.x"
            )
    return list(seats)


def _checked_ga(areas: list[GaArea], path: str) -> list[GaArea]:
    if len(areas) > MAX_GA_AREAS:
        raise InvalidInput(f"A layout has at most {MAX_GA_AREAS} GA areas.", path=f"{path}.ga")
    names: set[str] = set()
    for index, area in enumerate(areas):
        here = f"{path}.ga[{index}]"
        if not area.name.strip():
            raise InvalidInput("A GA area needs a name.", path=f"{here}.name")
        if area.name in names:
            raise InvalidInput(f"GA area name {area.name!r} is used twice.", path=f"{here}.name")
        names.add(area.name)
        if not 0 < area.capacity <= MAX_GA_CAPACITY:
            raise InvalidInput(
                f"GA area {area.name!r} needs a capacity from 1 to {MAX_GA_CAPACITY}.",
                path=f"{here}.capacity",
            )
        if area.category not in CATEGORIES:
            raise InvalidInput(
                f"GA area {area.name!r} has an unknown category {area.category!r}; "
                f"known: {', '.join(CATEGORIES)}.",
                path=f"{here}.category",
            )
    return list(areas)
