"""A worker SIGKILLed mid-refund while the gateway fails 30% of refund calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cluster import Backing
from bench.scenarios import SHORT, worker_kill
from tests.chaos.verdicts import assert_kept

# Processes killed, servers restarted, load timed: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_worker_sigkill_mid_refund_with_failing_gateway(chaos_servers: Backing, tmp_path: Path) -> None:
    """The worker dies with refunds in flight and is started again: every refund is made exactly
    once, of the right amount, within seconds (not after a 60 s lease)."""
    outcome = await worker_kill(chaos_servers, SHORT, tmp_path, workers=1)
    assert outcome.notes["refunded"] == SHORT.refunds
    assert_kept(outcome)
