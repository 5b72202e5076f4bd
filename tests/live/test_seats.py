"""Seat selection and stranding rules, pure, on the demo data's real layouts."""

from __future__ import annotations

import pytest

from seatmap import demo
from seatmap.catalog.layouts import LayoutSpec, normalise
from seatmap.live.seats import Place, Plan, best_blocks, best_split, largest_block, plan, stranded_by, strands


def plan_of(spec: LayoutSpec) -> Plan:
    layout = normalise(spec)
    return plan(Place(s.label, s.row, s.x, s.y, s.category, s.accessible, s.companion) for s in layout.seats)


def rows_plan(*rows: str) -> Plan:
    return plan_of(LayoutSpec(rows=list(rows)))


PREMIERE = plan_of(demo.PREMIERE)
MEDIUM = plan_of(demo.STUDIO_MEDIUM)
VELVET = plan_of(demo.VELVET)


@pytest.mark.parametrize(
    ("run", "count", "offset", "strands_one"),
    [
        (10, 2, 0, False),  # at the start: 8 left on the right
        (10, 2, 1, True),  # leaves seat 1 alone
        (10, 2, 7, True),  # leaves the last seat alone
        (10, 2, 8, False),  # at the end
        (3, 2, 0, False),  # any 2 of 3 leave one: unavoidable, allowed
        (3, 2, 1, False),
        (4, 2, 1, True),  # middle of 4 leaves two lone seats; the ends would not
        (5, 3, 1, True),
        (5, 5, 0, False),
        (2, 1, 0, False),  # 2 seats, take 1: one left whatever: allowed
    ],
)
def test_strands_table(run: int, count: int, offset: int, strands_one: bool) -> None:
    """Taking seats strands a lone seat exactly when another choice in the same run would not."""
    assert strands(run, count, offset) is strands_one


def test_segments_follow_gaps_and_aisles() -> None:
    """Aisles split rows into segments: the premiere hall's rows are 6 | 14 | 6."""
    lengths = {len(seg) for seg in PREMIERE.segments if seg[0].category != "premium" and seg[0].row != "A"}
    assert lengths == {6, 14}
    a_row = [seg for seg in PREMIERE.segments if seg[0].row == "A"]
    assert sum(len(seg) for seg in a_row) == 26
    assert PREMIERE.total == 624


def test_best_block_is_central_and_near_the_sweet_row() -> None:
    """In an empty hall, the best 4 are in the middle block, on the sweet-spot row, around the centre line."""
    (first, *_) = best_blocks(PREMIERE, {}, 4)
    places = {p.label: p for seg in PREMIERE.segments for p in seg}
    xs = [places[s].x for s in first]
    assert len({places[s].row for s in first}) == 1
    assert abs((min(xs) + max(xs)) / 2 - PREMIERE.sweet_x) <= 1
    assert abs(places[first[0]].y - PREMIERE.sweet_y) <= 1


def test_best_blocks_never_cross_an_aisle() -> None:
    """Eight together never straddle an aisle: every candidate lies inside one segment."""
    segment_of = {p.label: i for i, seg in enumerate(PREMIERE.segments) for p in seg}
    for block in best_blocks(PREMIERE, {}, 8, limit=50):
        assert len({segment_of[s] for s in block}) == 1
    # A 6-seat side block can't hold 7: the 7 come from a centre block.
    for block in best_blocks(PREMIERE, {}, 7, limit=50):
        assert len(PREMIERE.segments[segment_of[block[0]]]) == 14


def test_best_blocks_avoid_stranding_and_taken_seats() -> None:
    """Candidates never overlap taken seats and never leave a lone seat that could be avoided."""
    taken = {f"J{n}": "sold" for n in range(8, 20)}
    for block in best_blocks(PREMIERE, taken, 3, limit=100):
        assert not set(block) & set(taken)
        assert stranded_by(PREMIERE, taken, block) is None


def test_general_best_available_skips_accessible_places() -> None:
    """Wheelchair spaces and companion seats are only offered to those who ask for them."""
    special = {p.label for seg in MEDIUM.segments for p in seg if p.accessible or p.companion}
    assert special
    for block in best_blocks(MEDIUM, {}, 2, limit=500):
        assert not set(block) & special
    accessible = best_blocks(MEDIUM, {}, 2, accessible=True)
    assert accessible and set(accessible[0]) <= special


def test_category_filter() -> None:
    """Asking for premium gets premium seats only."""
    places = {p.label: p for seg in MEDIUM.segments for p in seg}
    blocks = best_blocks(MEDIUM, {}, 4, category="premium", limit=20)
    assert blocks and all(places[s].category == "premium" for b in blocks for s in b)


def test_nearly_full_hall_reports_largest_block_and_splits() -> None:
    """With only pairs left, 3 together is impossible: the largest block is 2, and a split finds 2+1."""
    p = VELVET  # rows of VV_VV__VV_VV
    taken = {
        f"{row}{n}": "sold" for row in "ABCDEF" for n in range(1, 9) if not (row == "C" and n in (3, 4, 5))
    }
    assert best_blocks(p, taken, 3) == []
    assert largest_block(p, taken) == 2
    split = best_split(p, taken, 3)
    assert split and set(split[0]) == {"C3", "C4", "C5"}


@pytest.mark.parametrize(
    ("taken", "taking", "stranded"),
    [
        ({}, ["A2"], "A1"),  # next to the row end
        ({}, ["A1"], None),
        ({"A1": "s"}, ["A3"], "A2"),  # between a taken seat and the new one
        ({"A1": "s"}, ["A2", "A3"], None),
        ({"A1": "s", "A5": "s"}, ["A2", "A3"], None),  # 2,3,4 free: any 2 leave one, unavoidable
        ({"A1": "s", "A6": "s"}, ["A3", "A4"], "A2"),  # 2..5 free: take the ends instead
        ({}, ["A4"], "A5"),  # A5 would be alone before the gap
    ],
)
def test_stranded_by_table(taken: dict[str, str], taking: list[str], stranded: str | None) -> None:
    """The rule as the hold script applies it, on a row with a gap after seat 5."""
    p = rows_plan("SSSSS_SSSS")
    assert stranded_by(p, taken, taking) == stranded
