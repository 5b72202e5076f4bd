"""Redis SIGKILLed and restarted empty, with Redis's default configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cluster import Backing
from bench.scenarios import SHORT, redis_kill, refund_then_resell
from tests.chaos.verdicts import assert_kept

# Processes killed, servers restarted, load timed: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_redis_sigkill_and_empty_restart_under_load(chaos_servers: Backing, tmp_path: Path) -> None:
    """Redis lost mid-race: the map is rebuilt from PostgreSQL, viewers converge on it, no seat
    is sold twice, and the web processes turn keyspace notifications back on."""
    outcome = await redis_kill(chaos_servers, SHORT, tmp_path)
    assert_kept(outcome)
    events = str(outcome.notes["keyspace_events"])
    assert "E" in events and ("x" in events or "A" in events), f"notify-keyspace-events is {events!r}"


async def test_refund_then_resell_across_redis_restart(chaos_servers: Backing, tmp_path: Path) -> None:
    """A refunds B5,B6, B buys them, Redis restarts empty, then A's refund runs: B's seats stay
    sold on the map and in PostgreSQL, and C cannot hold them."""
    outcome = await refund_then_resell(chaos_servers, SHORT, tmp_path)
    assert outcome.notes["redis_B5_B6"] == "s,s", outcome.notes
    assert outcome.notes["C_could_hold"] is False
    assert_kept(outcome, recovery=None)
