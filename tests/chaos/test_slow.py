"""Sockets that never read, beside normal viewers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cluster import Backing
from bench.scenarios import SHORT, slow_sockets
from tests.chaos.verdicts import assert_kept

# Processes killed, servers restarted, load timed: alone, after the parallel pass.
pytestmark = pytest.mark.serial


async def test_slow_sockets_beside_normal_viewers(chaos_servers: Backing, tmp_path: Path) -> None:
    """Sockets that stop reading are reset or closed by the server, normal viewers keep an exact
    map in sequence, and no web process logs an error."""
    outcome = await slow_sockets(chaos_servers, SHORT, tmp_path)
    assert_kept(outcome, recovery=None)
    assert outcome.notes["slow_undetected"] == 0, outcome.notes
    assert outcome.notes["web_errors"] == 0, outcome.notes
