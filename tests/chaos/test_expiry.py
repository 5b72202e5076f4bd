"""Many holds expiring at once, watched by viewers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cluster import Backing
from bench.scenarios import SHORT, expiry
from tests.chaos.verdicts import assert_kept

# Processes killed, servers restarted, load timed: alone, after the parallel pass.
pytestmark = pytest.mark.serial

# The target: restocked on every viewer's map within 500 ms of the deadline (p99).
RESTOCK_P99_MS = 500.0


async def test_expiry_of_many_holds_restocks_on_time(chaos_servers: Backing, tmp_path: Path) -> None:
    """Hundreds of 2 s holds lapse: every viewer sees each seat freed once, p99 ≤ 500 ms late."""
    outcome = await expiry(chaos_servers, SHORT, tmp_path)
    assert outcome.notes["holds"] == SHORT.holds
    assert outcome.notes["never_freed"] == 0, outcome.notes
    assert_kept(outcome, recovery=None)
    assert outcome.restock_p99_ms is not None
    assert outcome.restock_p99_ms <= RESTOCK_P99_MS, outcome.notes
