"""A web process SIGKILLed under a buying race."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cluster import Backing
from bench.scenarios import SHORT, web_kill
from tests.chaos.verdicts import assert_kept

# Processes killed, servers restarted, load timed: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_web_sigkill_under_buying_race(chaos_servers: Backing, tmp_path: Path) -> None:
    """A web process killed mid-race: no seat sold twice, every payment becomes tickets or a
    refund within seconds, and every viewer (reconnected with `since`) ends on PostgreSQL's map."""
    outcome = await web_kill(chaos_servers, SHORT, tmp_path, kills=1)
    assert outcome.notes["paid"] > 0
    assert_kept(outcome)
