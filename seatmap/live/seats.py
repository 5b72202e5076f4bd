"""Seat selection rules, pure: rows and their segments, best available, stranded single seats.

A *segment* is a run of seats in one row with no gap or aisle between them (consecutive x).
Seats are only "together" inside a segment, and only a segment's ends border a gap.

*Best* (docs/seating.md): the block whose centre is closest to the auditorium's sweet spot,
by `|dx| + ROW_WEIGHT * |dy|` in seat cells (a row further away costs more than a seat to the
side). The sweet spot is the centre line at `sweet_row` (a fraction of the depth from the
screen, 0.6 by default).

*Stranding*: taking seats must not leave a single free seat alone between taken seats, or
between a taken seat and a gap or row end, unless that cannot be avoided: when the free run the
seats come from would keep exactly one seat whatever seats of it were chosen (run length minus
seats taken from it == 1). The Lua hold script enforces the same rule atomically; this module
ranks candidates so that the first one normally passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

ROW_WEIGHT: Final = 1.5
DEFAULT_SWEET_ROW: Final = 0.6


@dataclass(frozen=True, slots=True)
class Place:
    """A seat as selection sees it."""

    label: str
    row: str
    x: int
    y: int
    category: str = "standard"
    accessible: bool = False
    companion: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """The auditorium's seats grouped into segments, plus its sweet spot."""

    segments: tuple[tuple[Place, ...], ...]
    sweet_x: float
    sweet_y: float
    total: int

    def neighbours(self) -> dict[str, tuple[str, str]]:
        """label -> (left, right) inside its segment; '' at a segment end."""
        out: dict[str, tuple[str, str]] = {}
        for seg in self.segments:
            for i, place in enumerate(seg):
                left = seg[i - 1].label if i > 0 else ""
                right = seg[i + 1].label if i + 1 < len(seg) else ""
                out[place.label] = (left, right)
        return out


def plan(places: Iterable[Place], sweet_row: float = DEFAULT_SWEET_ROW) -> Plan:
    rows: dict[tuple[int, str], list[Place]] = {}
    for p in places:
        rows.setdefault((p.y, p.row), []).append(p)
    segments: list[tuple[Place, ...]] = []
    xs: list[int] = []
    ys: list[int] = []
    for (_, _), row in sorted(rows.items()):
        row.sort(key=lambda p: p.x)
        current = [row[0]]
        for prev, place in itertools.pairwise(row):
            if place.x == prev.x + 1:
                current.append(place)
            else:
                segments.append(tuple(current))
                current = [place]
        segments.append(tuple(current))
        xs += [p.x for p in row]
        ys.append(row[0].y)
    if not segments:
        return Plan((), 0.0, 0.0, 0)
    sweet_x = (min(xs) + max(xs)) / 2
    sweet_y = min(ys) + (max(ys) - min(ys)) * sweet_row
    return Plan(tuple(segments), sweet_x, sweet_y, len(xs))


def _runs(segment: tuple[Place, ...], taken: Mapping[str, object]) -> list[tuple[Place, ...]]:
    """Maximal runs of free seats in a segment."""
    runs: list[tuple[Place, ...]] = []
    current: list[Place] = []
    for place in segment:
        if place.label in taken:
            if current:
                runs.append(tuple(current))
            current = []
        else:
            current.append(place)
    if current:
        runs.append(tuple(current))
    return runs


def strands(run_length: int, count: int, offset: int) -> bool:
    """Would taking `count` seats at `offset` of a free run leave a lone seat that could be avoided?"""
    if run_length - count == 1:
        return False  # any choice leaves one: unavoidable
    return offset == 1 or run_length - count - offset == 1


def _score(block: tuple[Place, ...], p: Plan) -> float:
    centre = (block[0].x + block[-1].x) / 2
    return abs(centre - p.sweet_x) + ROW_WEIGHT * abs(block[0].y - p.sweet_y)


def _eligible(category: str | None, accessible: bool) -> Callable[[Place], bool]:
    def ok(place: Place) -> bool:
        if category is not None and place.category != category:
            return False
        # Wheelchair spaces and companion seats are kept for those who ask for them.
        special = place.accessible or place.companion
        return special if accessible else not special

    return ok


@dataclass(frozen=True, slots=True)
class Choice:
    seats: tuple[str, ...]
    score: float


def _windows(
    p: Plan, taken: Mapping[str, object], count: int, ok: Callable[[Place], bool], strand_rule: bool
) -> list[Choice]:
    found: list[Choice] = []
    for segment in p.segments:
        for run in _runs(segment, taken):
            for offset in range(len(run) - count + 1):
                block = run[offset : offset + count]
                if not all(ok(place) for place in block):
                    continue
                if strand_rule and strands(len(run), count, offset):
                    continue
                found.append(Choice(tuple(b.label for b in block), _score(block, p)))
    found.sort(key=lambda c: c.score)
    return found


def best_blocks(
    p: Plan,
    taken: Mapping[str, object],
    count: int,
    *,
    category: str | None = None,
    accessible: bool = False,
    strand_rule: bool = True,
    limit: int = 8,
) -> list[tuple[str, ...]]:
    """The best `limit` blocks of `count` adjacent free seats on this map, best first.

    The reference for what best-available must pick: the hold script walks `ranked_blocks`
    against live state instead, and the tests check the two agree (no block this finds may be
    left when a request was refused).
    """
    choices = _windows(p, taken, count, _eligible(category, accessible), strand_rule)
    if accessible and not choices:
        # Not enough accessible places together: seat the party on the best ordinary seats.
        choices = _windows(p, taken, count, _eligible(category, False), strand_rule)
    return [c.seats for c in choices[:limit]]


def ranked_blocks(
    p: Plan, count: int, *, category: str | None = None, accessible: bool = False
) -> list[tuple[str, ...]]:
    """Every block of `count` in the empty hall, best first: the order best-available tries them in.

    Scores do not depend on who holds what, so this is computed once per screening and kind of
    request; the hold script walks it and takes the first block that is free and strands no seat
    (the state-dependent part). For an accessible request, accessible blocks come first, then
    ordinary ones.
    """
    blocks = [c.seats for c in _windows(p, {}, count, _eligible(category, accessible), False)]
    if accessible:
        blocks += [c.seats for c in _windows(p, {}, count, _eligible(category, False), False)]
    return blocks


def largest_block(
    p: Plan, taken: Mapping[str, object], *, category: str | None = None, accessible: bool = False
) -> int:
    ok = _eligible(category, accessible)
    best = 0
    for segment in p.segments:
        length = 0
        for place in segment:
            length = length + 1 if place.label not in taken and ok(place) else 0
            best = max(best, length)
    return best


def best_split(
    p: Plan,
    taken: Mapping[str, object],
    count: int,
    *,
    category: str | None = None,
    accessible: bool = False,
    strand_rule: bool = True,
    limit: int = 8,
) -> list[tuple[str, ...]]:
    """When no block of `count` exists: the closest pairs of blocks that add up to `count`.

    Pairs are ranked by how far apart the two blocks are (seat cells, rows weighted) plus how
    far their middle is from the sweet spot, so a party split in two sits as close as possible.
    """
    ok = _eligible(category, accessible)
    pairs: list[Choice] = []
    for first in range(count - 1, (count - 1) // 2, -1):
        second = count - first
        a_blocks = _windows(p, taken, first, ok, strand_rule)[:20]
        b_blocks = _windows(p, taken, second, ok, strand_rule)[:20]
        index = {place.label: place for seg in p.segments for place in seg}
        for a in a_blocks:
            for b in b_blocks:
                if set(a.seats) & set(b.seats):
                    continue
                pa, pb = index[a.seats[0]], index[b.seats[0]]
                if pa.y == pb.y and _same_segment_touching(a.seats, b.seats, index):
                    continue  # that would be one block, found already
                gap = abs(pa.x - pb.x) + ROW_WEIGHT * abs(pa.y - pb.y)
                pairs.append(Choice(a.seats + b.seats, gap + (a.score + b.score) / 2))
    pairs.sort(key=lambda c: c.score)
    unique: list[tuple[str, ...]] = []
    seen: set[frozenset[str]] = set()
    for c in pairs:
        key = frozenset(c.seats)
        if key not in seen:
            seen.add(key)
            unique.append(c.seats)
        if len(unique) == limit:
            break
    return unique


def _same_segment_touching(a: tuple[str, ...], b: tuple[str, ...], index: Mapping[str, Place]) -> bool:
    xs_a = [index[s].x for s in a]
    xs_b = [index[s].x for s in b]
    return min(xs_b) == max(xs_a) + 1 or min(xs_a) == max(xs_b) + 1


def stranded_by(p: Plan, taken: Mapping[str, object], taking: Iterable[str]) -> str | None:
    """The seat this take would strand (the rule as the Lua script applies it), or None."""
    taking = set(taking)
    nb = p.neighbours()

    def free_before(label: str) -> bool:
        return bool(label) and label not in taken

    def free_after(label: str) -> bool:
        return free_before(label) and label not in taking

    for label in sorted(taking):
        left, right = nb.get(label, ("", ""))
        for n, away in ((left, 0), (right, 1)):
            if not free_after(n):
                continue
            other = nb[n][away]
            if free_after(other):
                continue
            # n would be alone; unavoidable if its free run keeps exactly one seat anyway.
            run, k = 1, 0
            for direction in (0, 1):
                cursor = nb[n][direction]
                while free_before(cursor):
                    run += 1
                    k += cursor in taking
                    cursor = nb[cursor][direction]
            if run - k != 1:
                return n
    return None
