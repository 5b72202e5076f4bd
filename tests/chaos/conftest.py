"""The chaos tests' own PostgreSQL and Redis, which they SIGKILL, restart and stop.

Not the suite's servers (tests/conftest.py): those are shared by every test and, on CI, are the
machine's own, which no test may break. One pair for the whole directory (initdb takes a few
seconds); each scenario gets its own database and Redis key prefix on it (bench/trial.py).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.cluster import Backing, own_servers
from bench.servers import raise_fd_limit


@pytest.fixture(scope="package")
async def chaos_servers() -> AsyncIterator[Backing]:
    raise_fd_limit()
    directory = Path(tempfile.mkdtemp(prefix="seatmap-chaos-"))
    try:
        async with own_servers(directory) as servers:
            yield servers
    finally:
        shutil.rmtree(directory, ignore_errors=True)
