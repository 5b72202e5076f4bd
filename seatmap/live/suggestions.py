"""Seat suggestions: the block best-available would hold now, without holding anything.

The box office (web/kiosk.html) shows the customer the best seats before selling them. It used
to rank seats in the browser with rules of its own; it asks here instead, and the answer is the
hold script's own walk (holds.lua `best`) replayed over a snapshot of the map: the ranked blocks
of `seats.ranked_blocks`, best first, the first that is free and strands no seat
(`seats.stranded_by`, the rule as the script applies it, including its step-aside once
`strand_max_share` of the hall is taken). So a best-available hold made right after gets the
same seats, unless someone took them in between: a suggestion reserves nothing.

Anyone may ask: it tells no more than the public seat map does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.api import documented, path_int, respond
from seatmap.errors import InvalidInput
from seatmap.live.seats import Plan, largest_block, ranked_blocks, stranded_by
from seatmap.runtime import runtime


class SuggestionQuery(msgspec.Struct, forbid_unknown_fields=True):
    """`?count=` seats together, of one `category`, `accessible` places first; `limit` blocks."""

    count: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    category: str | None = None
    accessible: bool = False
    limit: Annotated[int, msgspec.Meta(ge=1, le=20)] = 1


class Suggestion(msgspec.Struct):
    """The best blocks of `count` free seats now, best first (empty: none left together);
    `largest` is the largest block of such seats free now."""

    screening_id: int
    count: int
    blocks: list[list[str]]
    largest: int


def suggest(
    plan: Plan,
    taken: Mapping[str, object],
    ranked: list[tuple[str, ...]],
    *,
    strand_rule: bool,
    limit: int = 1,
) -> list[tuple[str, ...]]:
    """The first `limit` blocks of `ranked` that the hold script's walk would accept on this map.

    `strand_rule` is whether the no-stranded-seat rule applies now (the screening has it on and
    not too much of the hall is taken); `taken` maps every seat that is not free.
    """
    found: list[tuple[str, ...]] = []
    for block in ranked:
        if any(label in taken for label in block):
            continue
        if strand_rule and stranded_by(plan, taken, block) is not None:
            continue
        found.append(block)
        if len(found) == limit:
            break
    return found


def _query(request: Request) -> SuggestionQuery:
    try:
        return msgspec.convert(dict(request.query_params), SuggestionQuery, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


@documented(
    "Suggest the best seats",
    query=SuggestionQuery,
    responses={200: Suggestion, 404: None},
    tags=("seating",),
)
async def suggest_seats(request: Request) -> Response:
    """What best-available would hold now (same ranking, same rules), without holding anything."""
    screening = path_int(request, "id")
    ask = _query(request)
    rt = runtime(request)
    if ask.count > rt.settings.hold_max_seats:
        raise InvalidInput(f"At most {rt.settings.hold_max_seats} seats together.", path="$.count")
    inventory = rt.holds.inventory
    layout = await inventory.layout(screening)
    if ask.category is not None and ask.category not in layout.categories.values():
        raise InvalidInput(f"No {ask.category!r} seats here.", path="$.category")
    taken = (await inventory.snapshot(screening)).seats
    rule = layout.strand_rule and (len(taken) + ask.count <= rt.settings.strand_max_share * layout.plan.total)
    ranked = ranked_blocks(layout.plan, ask.count, category=ask.category, accessible=ask.accessible)
    blocks = suggest(layout.plan, taken, ranked, strand_rule=rule, limit=ask.limit)
    largest = largest_block(layout.plan, taken, category=ask.category, accessible=ask.accessible)
    return respond(Suggestion(screening, ask.count, [list(b) for b in blocks], largest))


routes: list[BaseRoute] = [
    Route("/screenings/{id:int}/suggestion", suggest_seats, methods=["GET"]),
]
