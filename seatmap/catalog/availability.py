"""Availability: whether a screening still has seats, as a listing shows it (`available`,
`few_left`, `sold_out`), from the live state.

What a buyer can take now is what is free in the live map: held seats are not (they may come
back when their hold lapses, and the word changes then). So `few_left` is "taken" (held, sold)
reaching SEATMAP_NEARLY_SOLD_OUT of the sellable seats (seats and GA units, minus blocked ones),
and `sold_out` is nothing free; the admins' alert counts sold tickets only (sales/alerts.py).

A page of screenings costs one pipelined Redis read (three commands per screening, one round
trip) plus what the listing's SQL already returns (blocked seats, sold tickets): a screening
not loaded in Redis has no holds, so its sold tickets are all that is taken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from seatmap.runtime import Runtime

Availability = Literal["available", "few_left", "sold_out"]
AVAILABILITIES: Final = ("available", "few_left", "sold_out")


def availability(sellable: int, free: int, threshold: float) -> Availability:
    """The word for `free` of `sellable` seats left. Pure.

    `few_left` once what is taken reaches `threshold` of the sellable seats (rounded up, as the
    alert: 44 of 48 at 90%); `sold_out` when nothing is free (or nothing was ever sellable).
    """
    if free <= 0 or sellable <= 0:
        return "sold_out"
    if sellable - free >= math.ceil(threshold * sellable - 1e-9):
        return "few_left"
    return "available"


@dataclass(frozen=True)
class Capacity:
    """What PostgreSQL says of one screening: its seats and GA units, blocked seats, sold tickets."""

    screening: int
    seats: int
    ga: int
    blocked: int
    sold: int

    @property
    def sellable(self) -> int:
        return self.seats + self.ga - self.blocked


async def live_availability(rt: Runtime, screenings: Sequence[Capacity]) -> dict[int, Availability]:
    """Each screening's availability from the live map, in one pipelined round trip."""
    if not screenings:
        return {}
    inventory = rt.holds.inventory
    async with rt.redis.pipeline(transaction=False) as pipe:
        for s in screenings:
            k = inventory.keys(s.screening)
            pipe.exists(k.meta)
            pipe.hlen(k.seats)  # seats not free: held, sold and blocked
            pipe.hvals(k.ga)  # GA units taken (held and sold) per area
        replies = await pipe.execute()
    threshold = rt.settings.nearly_sold_out
    found: dict[int, Availability] = {}
    for i, s in enumerate(screenings):
        loaded, not_free, ga_taken = replies[3 * i : 3 * i + 3]
        if loaded:
            free = s.seats - int(not_free) + s.ga - sum(int(units) for units in ga_taken)
        else:
            free = s.sellable - s.sold
        found[s.screening] = availability(s.sellable, free, threshold)
    return found


def seat_map_availability(
    seats: int, ga_capacity: int, not_free: dict[str, str], ga_left: int, threshold: float
) -> Availability:
    """The availability of a screening whose live map was just read (the screening detail)."""
    blocked = sum(1 for state in not_free.values() if state == "blocked")
    free = seats - len(not_free) + ga_left
    return availability(seats + ga_capacity - blocked, free, threshold)
