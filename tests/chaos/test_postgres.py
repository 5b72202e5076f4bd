"""PostgreSQL restarted (fast, immediate) or down for seconds, with the worker running."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cluster import Backing
from bench.scenarios import SHORT, postgres_restart
from tests.chaos.verdicts import assert_kept

# Processes killed, servers restarted, load timed: alone, after the parallel pass.
pytestmark = pytest.mark.serial


@pytest.mark.parametrize("mode", ["fast+immediate", "outage"])
async def test_postgres_restart_under_load(chaos_servers: Backing, tmp_path: Path, mode: str) -> None:
    """PostgreSQL goes away mid-race (refunds flowing): requests meanwhile answer 503, never 500;
    the worker rides it out; afterwards every payment is tickets or refunded exactly once."""
    outcome = await postgres_restart(chaos_servers, SHORT, tmp_path, mode)
    assert "workers_exited" not in outcome.notes, outcome.notes
    assert_kept(outcome)
