"""The typed script boundary: each Inventory method answers the Struct its script's outcome names."""

from __future__ import annotations

import pytest

from seatmap.live import replies
from seatmap.live.inventory import HoldTerms, Inventory, SeatMap
from seatmap.runtime import Runtime
from tests.support import make_screening

TERMS = HoldTerms(ttl_ms=60_000, max_ms=120_000, per_user=1, max_seats=4, strand_share=0.9)


@pytest.fixture
async def inventory(rt: Runtime) -> Inventory:
    return Inventory(rt.redis, rt.pool, rt.settings.redis_prefix, 100, sold=rt.holds.inventory.sold)


async def test_a_hold_and_its_refusals_are_typed(rt: Runtime, inventory: Inventory) -> None:
    """A hold answers Held with its seq and deadlines; a taken or blocked seat answers Taken naming which."""
    screening = await make_screening(rt, ["SSSSSS"], ga=[("Floor", 2)], strand_rule=False)
    assert await inventory.block(screening, ["A6"]) == []
    held = await inventory.hold(screening, f"{screening}.alice", 1, TERMS, [["A1", "A2"]])
    assert isinstance(held, replies.Held)
    assert held.seats == ["A1", "A2"] and held.seq > 10**15  # the seq starts at the clock in us
    assert held.max_ms - held.expires_ms == TERMS.max_ms - TERMS.ttl_ms
    lost = await inventory.hold(screening, f"{screening}.bob", 2, TERMS, [["A2", "A5", "A6"]])
    assert lost == replies.Taken(taken=["A2"], blocked=["A6"])
    assert await inventory.hold(screening, f"{screening}.bob2", 2, TERMS, [], "Floor", 3) == replies.SoldOut(
        2
    )
    again = await inventory.hold(screening, f"{screening}.alice2", 1, TERMS, [["A4"]])
    assert again == replies.HoldLimit([f"{screening}.alice"])
    assert await inventory.snapshot(screening) == SeatMap(
        seq=held.seq,
        seats={"A1": "held", "A2": "held", "A6": "blocked"},
        ga={"Floor": 2},
        status="scheduled",
    )


async def test_changing_a_hold_answers_each_outcome(rt: Runtime, inventory: Inventory) -> None:
    """Modify, extend and release answer typed outcomes; a stranger's token is Gone, a sale is Done once."""
    screening = await make_screening(rt, ["SSSSSS"], strand_rule=False)
    token = f"{screening}.alice"
    assert isinstance(await inventory.hold(screening, token, 1, TERMS, [["A1"]]), replies.Held)
    modified = await inventory.modify(screening, token, 1, TERMS, ["A2", "A3"], ["A1"])
    assert isinstance(modified, replies.Modified) and modified.seats == ["A2", "A3"] and modified.seq > 0
    assert await inventory.modify(screening, token, 1, TERMS, [], ["A6"]) == replies.NotHeld(["A6"])
    too_many = await inventory.modify(screening, token, 1, TERMS, ["A4", "A5", "A6"], [])
    assert too_many == replies.TooMany(count=5, limit=4)
    extended = await inventory.extend(screening, token, 1, TERMS.ttl_ms)
    assert isinstance(extended, replies.Extended) and (extended.seats, extended.area, extended.qty) == (
        ["A2", "A3"], "", 0
    )  # fmt: skip
    assert await inventory.extend(screening, token, 2, TERMS.ttl_ms) == replies.Gone()
    assert await inventory.release(screening, token, 2) == replies.Gone()
    sold = await inventory.sell(screening, token, 1, ["A2", "A3"], "", 0, "order-1")
    assert isinstance(sold, replies.Changed) and sold.seq > modified.seq
    assert await inventory.sell(screening, token, 1, ["A2", "A3"], "", 0, "order-1") == replies.Done()
    assert await inventory.release(screening, token, 1) == replies.Gone()


async def test_a_restock_is_typed_and_leaves_the_owner_an_answer(rt: Runtime, inventory: Inventory) -> None:
    """An expired hold restocks once (Restocked, then Gone); its owner is then told Expired, others Gone."""
    screening = await make_screening(rt, ["SSSS"], strand_rule=False)
    token = f"{screening}.alice"
    short = HoldTerms(ttl_ms=50, max_ms=1000, per_user=1, max_seats=4, strand_share=0.9)
    assert isinstance(await inventory.hold(screening, token, 1, short, [["A1"]]), replies.Held)
    assert await inventory.restock(screening, token) == replies.Alive()
    await rt.redis.delete(inventory.keys(screening).ttl(token))  # the deadline passes
    restocked = await inventory.restock(screening, token)
    assert isinstance(restocked, replies.Restocked) and restocked.seq > 0 and restocked.lag_ms >= 0
    assert await inventory.restock(screening, token) == replies.Gone()
    assert await inventory.extend(screening, token, 1, 1000) == replies.Expired()
    assert await inventory.extend(screening, token, 2, 1000) == replies.Gone()
    assert (await inventory.snapshot(screening)).seats == {}


async def test_free_of_a_screening_not_in_redis_does_nothing(rt: Runtime, inventory: Inventory) -> None:
    """A refund's seats on a screening Redis does not hold: None, and the screening stays unloaded."""
    screening = await make_screening(rt, ["SSSS"])
    assert await inventory.free(screening, 7, ["A1"], "", 0) is None
    assert not await rt.redis.exists(inventory.keys(screening).meta)
