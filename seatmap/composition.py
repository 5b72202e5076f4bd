"""The composition root: what a process of each role is made of, opened once, closed in reverse.

`open_runtime(settings, role)` opens the PostgreSQL pool, the Redis client, the live holds, the
payment provider and, for a web process, the pub/sub listener, the channels and the expiry, and
yields the frozen `Runtime` (runtime.py) with a typed field for each. It starts no background
task: the web lifespan (app.py) and the worker (worker.py) start theirs on it, and the tests open
the same runtime to reach the databases a server uses without running a second sweeper or
webhook pump. It is also the one place that knows which payment provider is in use: the domains
see only the contract in `sales/gateway.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from seatmap.db import Pool, create_pool
from seatmap.errors import ConfigError
from seatmap.live.channels import Channels
from seatmap.live.expiry import Expiry
from seatmap.live.holds import Holds
from seatmap.live.inventory import Inventory
from seatmap.runtime import ProcessState, RedisClient, Role, Runtime, urls
from seatmap.sales.gateway import PaymentProvider
from seatmap.sales.settlement import checkout_settings
from seatmap.sales.tickets import sold_inventory
from seatmap.settings import Settings
from seatmap.simulated.provider import SimulatedGateway

# A worker's job holds a connection only while it talks to PostgreSQL, not while it waits for the
# gateway, so many jobs share fewer connections (PostgreSQL allows 100 by default, for every
# process); a few more serve the claim loop, lease renewal, housekeeping and mail.
_MAX_JOB_CONNECTIONS: Final = 20
_SPARE_CONNECTIONS: Final = 4


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, role: Role) -> AsyncIterator[Runtime]:
    """Open what a process of `role` holds, and close it all again on leaving, in reverse."""
    database_url, redis_url = urls(settings)
    async with contextlib.AsyncExitStack() as stack:
        if role == "web":
            pool = await create_pool(database_url, min_size=1, max_size=20)
        else:
            jobs = min(settings.job_concurrency, _MAX_JOB_CONNECTIONS)
            pool = await create_pool(database_url, min_size=2, max_size=jobs + _SPARE_CONNECTIONS)
        stack.push_async_callback(pool.close)
        redis = await stack.enter_async_context(open_redis(settings, redis_url))
        inventory = Inventory(
            redis, pool, settings.redis_prefix, settings.recovery_log_length,
            sold=sold_inventory, sweet_row=settings.sweet_row,
        )  # fmt: skip
        provider = await stack.enter_async_context(_open_provider(settings, pool))
        channels: Channels | None = None
        expiry: Expiry | None = None
        if role == "web":
            # The pub/sub connection without that retry: redis-py would reconnect it silently,
            # and Channels must see the drop to bring its viewers up to date (channels.py). On a
            # cluster, Channels opens one such connection per primary itself.
            listener = None
            if not settings.redis_cluster:
                listener = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=2)
                stack.push_async_callback(listener.aclose)
            channels = Channels(
                redis, inventory, queue_size=settings.ws_queue_size, heartbeat=settings.ws_heartbeat,
                listener=listener,
            )  # fmt: skip
            stack.push_async_callback(channels.stop)
            expiry = Expiry(
                redis, inventory, channels, hold_max=settings.hold_max,
                sweep_interval=settings.sweep_interval, hold_ttl=settings.hold_ttl,
            )  # fmt: skip
            stack.push_async_callback(expiry.stop)
        yield Runtime(
            settings=settings,
            role=role,
            pool=pool,
            redis=redis,
            holds=Holds(inventory, settings),
            checkout_holds=Holds(inventory, checkout_settings(settings)),
            provider=provider,
            channels=channels,
            expiry=expiry,
            state=ProcessState(),
        )


@contextlib.asynccontextmanager
async def open_redis(settings: Settings, redis_url: str) -> AsyncIterator[RedisClient]:
    """The process's Redis client: one Redis, or a Redis Cluster with SEATMAP_REDIS_CLUSTER.

    One Redis: a blocking pool, so under a burst commands wait briefly for a connection instead
    of failing with "Too many connections"; a command that meets a dead pooled connection (Redis
    restarted, an idle connection dropped) reconnects and is sent again, twice at most; without
    `retry` on the pool, redis-py would raise at once.

    A cluster: redis-py's asyncio `RedisCluster` from the seed nodes of REDIS_URL
    (`redis://[user:pass@]h1:7001,h2:7002`), which learns the slot map from them and follows
    MOVED/ASK; a command that meets a failed primary is retried (with a slot-map refresh) for
    about as long as a replica takes to be promoted.
    """
    if not settings.redis_cluster:
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=64, timeout=10, decode_responses=True,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), 2),
        )  # fmt: skip
        redis: RedisClient = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it
    else:
        first, seeds = cluster_seeds(redis_url)
        # A cluster node's pool does not wait for a free connection as the BlockingConnectionPool
        # does (it raises MaxConnectionsError at once, a 503): so room for a burst of requests.
        redis = RedisCluster.from_url(
            first, startup_nodes=seeds, decode_responses=True, max_connections=512,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 8),
        )  # fmt: skip
    try:
        await redis.ping()  # unreachable Redis: fail now, not at the first request or job
        yield redis
    finally:
        await redis.aclose()


def cluster_seeds(url: str) -> tuple[str, list[ClusterNode]]:
    """`redis://[user:pass@]h1:7001,h2:7002[/0]` as the URL of its first node (credentials, TLS)
    and every node as a seed; a URL naming one node is its own only seed."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    seeds: list[ClusterNode] = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not name or not port.isdigit():
            raise ConfigError(f"REDIS_URL seed {host!r} is not host:port")
        seeds.append(ClusterNode(name.strip("[]"), int(port)))
    first = (userinfo + "@" if userinfo else "") + hosts.split(",")[0].strip()
    return urlunsplit(parts._replace(netloc=first)), seeds


@contextlib.asynccontextmanager
async def _open_provider(settings: Settings, pool: Pool) -> AsyncIterator[PaymentProvider]:
    """The payment provider SEATMAP_PAYMENT_PROVIDER names; the composition root is where it is chosen."""
    name = settings.payment_provider
    if name != "simulated":
        raise ConfigError(f"unknown SEATMAP_PAYMENT_PROVIDER {name!r} (known: simulated)")
    gateway = SimulatedGateway(pool, settings)
    try:
        yield gateway
    finally:
        await gateway.aclose()
