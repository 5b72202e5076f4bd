"""The runtime every process opens: what each role holds, and what it refuses to start without."""

from __future__ import annotations

import asyncio
from dataclasses import FrozenInstanceError, replace

import httpx
import pytest

from seatmap.app import create_app
from seatmap.composition import open_runtime
from seatmap.errors import ConfigError
from seatmap.settings import Settings
from tests.support import Server


@pytest.mark.parametrize("missing", ["database_url", "redis_url"])
async def test_without_a_database_or_redis_url_nothing_starts_and_the_error_says_so(
    settings: Settings, missing: str
) -> None:
    """A web app or worker without DATABASE_URL or REDIS_URL refuses to start with a config error."""
    incomplete = replace(settings, **{missing: None})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="DATABASE_URL and REDIS_URL"):
        create_app(incomplete)
    with pytest.raises(ConfigError, match="DATABASE_URL and REDIS_URL"):
        async with open_runtime(incomplete, "worker"):
            pass


async def test_an_unknown_payment_provider_is_refused_at_start_up(settings: Settings) -> None:
    """SEATMAP_PAYMENT_PROVIDER naming no known provider stops the process before it serves."""
    with pytest.raises(ConfigError, match="SEATMAP_PAYMENT_PROVIDER 'stripe'"):
        async with open_runtime(replace(settings, payment_provider="stripe"), "worker"):
            pass


async def test_a_worker_runtime_has_no_live_fan_out_and_a_web_runtime_does(settings: Settings) -> None:
    """The live map's channels and expiry exist in web processes only; the runtime cannot be rebound."""
    async with open_runtime(settings, "worker") as worker:
        assert (worker.role, worker.channels, worker.expiry) == ("worker", None, None)
        assert await worker.redis.ping()
        with pytest.raises(FrozenInstanceError):
            worker.holds = worker.checkout_holds  # type: ignore[misc]
    async with open_runtime(settings, "web") as web:
        assert web.role == "web" and web.channels is not None and web.expiry is not None


async def test_checkout_holds_last_the_payment_window(settings: Settings) -> None:
    """Holds taken for checkout may be extended to the payment window; ordinary ones keep their TTL."""
    tuned = replace(settings, hold_ttl=60, payment_window=300, hold_max=900)
    async with open_runtime(tuned, "worker") as rt:
        assert (rt.holds.settings.hold_ttl, rt.checkout_holds.settings.hold_ttl) == (60, 300)


async def test_a_background_task_that_dies_makes_readyz_fail(
    server: Server, client: httpx.AsyncClient
) -> None:
    """If a background task of a web process dies, /readyz answers 503 and names it."""
    assert server.runtime is not None

    async def crashing() -> None:
        raise RuntimeError("lost")

    task = asyncio.create_task(crashing(), name="test.crashing")
    server.runtime.state.watch(task)
    await asyncio.gather(task, return_exceptions=True)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["background"] == "stopped: test.crashing"
