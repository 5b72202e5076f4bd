"""Sold inventory as PostgreSQL has it: the hook through which `live` learns what is sold.

Tickets belong to sales (sales/tickets.py registers its source here at import); `live` knows
nothing of orders and imports no `sales` module. The rebuild of a screening's state in Redis
(`Inventory.load`) consults it, so once tickets exist a sold seat survives any loss of Redis
state; the reconciler (reconcile.py) compares Redis against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple


class SoldSeat(NamedTuple):
    order: str  # the order's ref (its id), as `sell` records it
    hold: str  # the hold the order was made from


@dataclass(frozen=True)
class Sold:
    """What PostgreSQL says is sold on a screening: each seat with its order, and per GA area
    the units of each order."""

    seats: dict[str, SoldSeat]
    ga: dict[str, dict[str, int]]  # area -> order ref -> units


SOLD_SOURCES: list[Callable[[Any, int], Awaitable[Sold]]] = []


async def sold(conn: Any, screening: int) -> Sold:
    """Every source's sold inventory of a screening, merged."""
    seats: dict[str, SoldSeat] = {}
    ga: dict[str, dict[str, int]] = {}
    for source in SOLD_SOURCES:
        found = await source(conn, screening)
        seats.update(found.seats)
        for area, orders in found.ga.items():
            ga.setdefault(area, {}).update(orders)
    return Sold(seats, ga)
