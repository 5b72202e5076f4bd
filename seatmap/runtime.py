"""What a running process holds open: settings, the PostgreSQL pool, the Redis client.

The lifespan in `app.py` builds one `Runtime` and puts it in the lifespan state, from where
Starlette copies it to every request and WebSocket; `runtime(conn)` gets it back, typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from seatmap.db import Pool
from seatmap.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from seatmap.live.channels import Channels


@dataclass(eq=False)
class Runtime:
    settings: Settings
    pool: Pool
    redis: Redis
    # Set by the lifespan once the live seat map is up; None in tools that only need the DB.
    channels: Channels | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def key(self, *parts: str | int) -> str:
        """A global (not per-screening) Redis key under this deployment's prefix."""
        return ":".join([self.settings.redis_prefix, *map(str, parts)])


def runtime(conn: HTTPConnection) -> Runtime:
    value = conn.state.runtime
    assert isinstance(value, Runtime)
    return value
