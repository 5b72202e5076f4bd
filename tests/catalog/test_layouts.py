"""Layout parsing, validation and normalisation (pure: no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from seatmap.catalog.layouts import MAX_SEATS, Layout, LayoutSpec, normalise, parse, row_label
from seatmap.errors import InvalidInput


def labels(layout: Layout) -> list[str]:
    return [seat.label for seat in layout.seats]


def test_compact_rows_number_seats_ignoring_gaps() -> None:
    """Seats are numbered from 1 left to right, gaps don't take a number but do take a column."""
    layout = parse({"rows": ["SS_SS", "_S_S_"]})
    assert labels(layout) == ["A1", "A2", "A3", "A4", "B1", "B2"]
    a3 = layout.seats[2]
    assert (a3.row, a3.number, a3.x, a3.y) == ("A", 3, 3, 0)
    b2 = layout.seats[5]
    assert (b2.x, b2.y) == (3, 1)
    assert (layout.width, layout.height) == (5, 2)


@pytest.mark.parametrize(
    ("index", "label"),
    [
        (0, "A"),
        (1, "B"),
        (25, "Z"),
        (26, "AA"),
        (27, "AB"),
        (51, "AZ"),
        (52, "BA"),
        (701, "ZZ"),
        (702, "AAA"),
    ],
)
def test_row_labels(index: int, label: str) -> None:
    """Rows are labelled like spreadsheet columns: A … Z, AA, AB …"""
    assert row_label(index) == label


def test_rows_past_z_get_double_letters() -> None:
    """A 28-row hall has rows Z, AA and AB, and seat AB1 exists."""
    layout = parse({"rows": ["S"] * 28})
    assert labels(layout)[24:] == ["Y1", "Z1", "AA1", "AB1"]
    assert layout.seats[-1].row == "AB"


def test_walkway_row_takes_a_y_but_no_letter() -> None:
    """A row of only gaps is a cross aisle: the letters after it continue without a hole."""
    layout = parse({"rows": ["SS", "__", "", "SS"]})
    assert labels(layout) == ["A1", "A2", "B1", "B2"]
    assert layout.seats[2].y == 3
    assert layout.height == 4


def test_category_characters() -> None:
    """P, V are premium and vip; W is an accessible standard space; C a companion standard seat."""
    layout = parse({"rows": ["SPVWC"]})
    got = [(s.category, s.accessible, s.companion) for s in layout.seats]
    assert got == [
        ("standard", False, False),
        ("premium", False, False),
        ("vip", False, False),
        ("standard", True, False),
        ("standard", False, True),
    ]
    assert layout.categories == ["standard", "premium", "vip"]


def test_categories_lists_only_those_used() -> None:
    """A hall without vip seats does not need a vip price."""
    assert parse({"rows": ["PSS"]}).categories == ["standard", "premium"]


def test_explicit_seat_list_is_kept() -> None:
    """An explicit seat list comes back as given, with defaults filled in."""
    layout = parse(
        {
            "seats": [
                {"label": "Box 1", "row": "BX", "number": 1, "x": 4, "y": 9, "category": "vip"},
                {"label": "A1", "row": "A", "number": 1, "x": 0, "y": 0, "accessible": True},
            ]
        }
    )
    assert labels(layout) == ["Box 1", "A1"]
    assert layout.seats[1].category == "standard"
    assert layout.seats[1].accessible is True
    assert (layout.width, layout.height) == (5, 10)
    assert layout.categories == ["standard", "vip"]


def test_ga_areas() -> None:
    """GA areas are kept with their capacity and count towards the categories."""
    layout = parse(
        {
            "ga": [
                {"name": "Festival", "capacity": 300},
                {"name": "VIP deck", "capacity": 40, "category": "vip"},
            ]
        }
    )
    assert layout.seats == []
    assert [(a.name, a.capacity, a.category) for a in layout.ga] == [
        ("Festival", 300, "standard"),
        ("VIP deck", 40, "vip"),
    ]
    assert layout.ga_capacity == 340
    assert layout.categories == ["standard", "vip"]


def test_seats_and_ga_together() -> None:
    """A concert hall has a seated balcony and a standing floor."""
    layout = parse({"rows": ["VV"], "ga": [{"name": "Floor", "capacity": 10}]})
    assert labels(layout) == ["A1", "A2"]
    assert layout.ga[0].name == "Floor"


def test_normalised_layout_round_trips_as_a_seat_list() -> None:
    """The normalised layout is itself a valid explicit submission that gives the same layout."""
    import msgspec

    layout = parse({"rows": ["WC_SS", "PP_PP"], "ga": [{"name": "Floor", "capacity": 5}]})
    again = parse(msgspec.to_builtins({"seats": layout.seats, "ga": layout.ga}))
    assert again == layout


Bad = tuple[dict[str, Any], str, str]

BAD_LAYOUTS: list[Bad] = [
    ({}, "$.layout", "at least one seat or one GA area"),
    ({"rows": []}, "$.layout", "at least one seat"),
    ({"rows": ["___", ""]}, "$.layout", "at least one seat"),
    ({"seats": [], "ga": []}, "$.layout", "at least one seat"),
    ({"rows": ["SS", "SS", "SS", "SXS"]}, "$.layout.rows[3]", "'X' at column 2"),
    ({"rows": ["SS S"]}, "$.layout.rows[0]", "' '"),
    ({"rows": ["S"], "seats": []}, "$.layout", "not both"),
    ({"rows": ["S" * 1000] * 10 + ["_S"]}, "$.layout.rows[10]", "at most 10000 seats"),
    ({"rows": ["S" * 1001]}, "$.layout.rows[0]", "at most 1000 columns"),
    ({"rows": "SSS"}, "$.layout.rows", "got `str`"),
    ({"rows": ["S"], "extra": 1}, "$.layout", "unknown field `extra`"),
    (
        {
            "seats": [
                {"label": "A1", "row": "A", "number": 1, "x": 0, "y": 0},
                {"label": "A2", "row": "A", "number": 2, "x": 1, "y": 0},
                {"label": "A1", "row": "A", "number": 3, "x": 2, "y": 0},
            ]
        },
        "$.layout.seats[2].label",
        "'A1' is used twice",
    ),
    (
        {
            "seats": [
                {"label": "A1", "row": "A", "number": 1, "x": 0, "y": 0},
                {"label": "A2", "row": "A", "number": 2, "x": 0, "y": 0},
            ]
        },
        "$.layout.seats[1].x",
        "A1 and A2 are both at (0, 0)",
    ),
    (
        {"seats": [{"label": "A1", "row": "A", "number": 1, "x": 0, "y": 0, "category": "gold"}]},
        "$.layout.seats[0].category",
        "Seat A1 has an unknown category 'gold'",
    ),
    (
        {"seats": [{"label": "A1", "row": "A", "number": 1, "x": -1, "y": 0}]},
        "$.layout.seats[0].x",
        ">= 0",
    ),
    (
        {"seats": [{"label": "A1", "row": "A", "number": 1, "x": 0, "y": 5000}]},
        "$.layout.seats[0].y",
        "<= 999",
    ),
    (
        {"seats": [{"label": "", "row": "A", "number": 1, "x": 0, "y": 0}]},
        "$.layout.seats[0].label",
        "length >= 1",
    ),
    (
        {"seats": [{"label": "A1", "row": "A", "number": 0, "x": 0, "y": 0}]},
        "$.layout.seats[0].number",
        ">= 1",
    ),
    (
        {
            "seats": [
                {"label": f"S{i}", "row": "S", "number": i + 1, "x": i % 200, "y": i // 200}
                for i in range(MAX_SEATS + 1)
            ]
        },
        "$.layout.seats",
        "at most 10000 seats",
    ),
    ({"ga": [{"name": "Floor", "capacity": 0}]}, "$.layout.ga[0].capacity", ">= 1"),
    ({"ga": [{"name": "Floor", "capacity": -5}]}, "$.layout.ga[0].capacity", ">= 1"),
    ({"ga": [{"name": "", "capacity": 5}]}, "$.layout.ga[0].name", "length >= 1"),
    ({"ga": [{"name": "  ", "capacity": 5}]}, "$.layout.ga[0].name", "needs a name"),
    (
        {"ga": [{"name": "Floor", "capacity": 5}, {"name": "Floor", "capacity": 9}]},
        "$.layout.ga[1].name",
        "'Floor' is used twice",
    ),
    (
        {"ga": [{"name": "Floor", "capacity": 5, "category": "backstage"}]},
        "$.layout.ga[0].category",
        "unknown category 'backstage'",
    ),
]


@pytest.mark.parametrize(("raw", "path", "message"), BAD_LAYOUTS)
def test_invalid_layouts_are_refused_with_a_path(raw: dict[str, Any], path: str, message: str) -> None:
    """A bad layout is a 422 naming where it is wrong and what is wrong."""
    with pytest.raises(InvalidInput) as caught:
        parse(raw)
    assert caught.value.status == 422
    assert caught.value.details["path"] == path
    assert message in caught.value.message


def test_exactly_max_seats_is_allowed() -> None:
    """10,000 seats is the limit, not past it."""
    layout = parse({"rows": ["S" * 100] * 100})
    assert len(layout.seats) == MAX_SEATS
    assert layout.seats[-1].label == "CV100"


def test_normalise_checks_structs_built_in_code() -> None:
    """Structs built without decoding (no msgspec constraints) get the same rules."""
    from seatmap.catalog.layouts import GaArea

    with pytest.raises(InvalidInput, match="capacity from 1"):
        normalise(LayoutSpec(ga=[GaArea(name="Floor", capacity=0)]))
