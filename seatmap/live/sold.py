"""Sold inventory as PostgreSQL has it: the hook through which `live` learns what is sold.

Tickets belong to sales; `live` knows nothing of orders and imports no `sales` module, so the
source (`SoldSource`) is handed to `Inventory` by composition.py. The rebuild of a screening's state in Redis
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


# Where PostgreSQL's sold seats come from: sales' tickets (`sales.tickets.sold_inventory`), given
# to `Inventory` by the composition root. A parameter, not a registry filled at import: a process
# that never imported sales would rebuild maps with every sold seat free.
SoldSource = Callable[[Any, int], Awaitable[Sold]]
