"""Real PostgreSQL and Redis for every test, isolated per test.

PostgreSQL: a template database gets the migrations once per session; each test gets its own
`CREATE DATABASE … TEMPLATE`, so concurrent connections in a test really conflict (a rollback
fixture would hide that). Redis: each test gets its own key prefix, which also names its
pub/sub channels (pub/sub ignores SELECT, so database numbers would not isolate them).

The servers are the embedded ones unless SEATMAP_TEST_DATABASE_URL / SEATMAP_TEST_REDIS_URL
point at real ones. With SEATMAP_REDIS_CLUSTER=1 the Redis URL names a Redis Cluster's seed nodes
(`python -m tests.redis_cluster serve` starts one) and every test's settings say so: the suite
then runs on the cluster, its keys cleaned up on every primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from seatmap.app import create_app
from seatmap.composition import open_runtime
from seatmap.db import migrate
from seatmap.embedded import embedded_postgres, embedded_redis
from seatmap.runtime import Runtime
from seatmap.settings import Secret, Settings
from tests.redis_cluster import delete_prefix
from tests.support import TIMEOUT_FACTOR, Server

# The suite's Redis is a cluster (SEATMAP_TEST_REDIS_URL its seed nodes): see the docstring.
REDIS_CLUSTER = os.environ.get("SEATMAP_REDIS_CLUSTER") == "1"

# For a test of one Redis server's own settings or connections, with the reason it says.
single_redis_only = pytest.mark.skipif(
    REDIS_CLUSTER,
    reason="tests one Redis server's own behaviour (a TCP gate in front of it, its connections); "
    "on a cluster the client learns every node's own address (tests/cluster/ covers outages there)",
)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    """The embedded servers' data, outside pytest's temp root.

    pytest prunes old session directories and resets the permissions of its root when a session
    starts; another pytest session running at the same time would pull the data directory out
    from under a PostgreSQL that runs as another user (pgserver drops root).
    """
    path = Path(tempfile.mkdtemp(prefix="seatmap-test-servers-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(servers_dir: Path) -> Iterator[str]:
    url = os.environ.get("SEATMAP_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with embedded_postgres(servers_dir) as embedded_url:
        yield embedded_url


@pytest.fixture(scope="session")
def redis_url(servers_dir: Path) -> Iterator[str]:
    url = os.environ.get("SEATMAP_TEST_REDIS_URL")
    if url:
        yield url
        return
    with embedded_redis(servers_dir) as embedded_url:
        yield embedded_url


async def _admin_execute(pg_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_db(pg_url: str) -> AsyncIterator[str]:
    name = f"seatmap_tpl_{uuid.uuid4().hex[:12]}"
    await _admin_execute(pg_url, f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(with_database(pg_url, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield name
    # Test databases are dropped in the background while later tests run; wait for them here.
    await asyncio.gather(*_drops)
    await _admin_execute(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_drops: list[asyncio.Task[None]] = []


@contextlib.asynccontextmanager
async def _database(pg_url: str, template_db: str) -> AsyncIterator[str]:
    name = f"seatmap_test_{uuid.uuid4().hex[:12]}"
    await _admin_execute(pg_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield with_database(pg_url, name)
    _drops.append(
        asyncio.create_task(_admin_execute(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    )


@pytest.fixture
async def database_url(pg_url: str, template_db: str) -> AsyncIterator[str]:
    async with _database(pg_url, template_db) as url:
        yield url


def _settings(database_url: str, redis_url: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=data_dir,
        dev=True,
        jwt_secret=Secret("test-secret-" + "x" * 40),
        redis_prefix=f"t{uuid.uuid4().hex[:10]}",
        log_json=False,
        redis_cluster=REDIS_CLUSTER,
    )


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return _settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    """The test's own runtime on the databases the server uses: a worker's, with nothing started
    (no jobs, no webhook pump), so the test alone decides what runs besides the server."""
    async with _runtime(settings) as runtime:
        yield runtime


@contextlib.asynccontextmanager
async def _runtime(settings: Settings) -> AsyncIterator[Runtime]:
    try:
        async with open_runtime(settings, "worker") as runtime:
            yield runtime
    finally:
        # Keys of this test's prefix; the server (and the next test) never sees them.
        assert settings.redis_url is not None
        await delete_prefix(settings.redis_url, settings.redis_cluster, settings.redis_prefix)


@contextlib.asynccontextmanager
async def running(
    app: Starlette | Settings, ws_max_size: int | None = None, port: int = 0
) -> AsyncIterator[Server]:
    """Uvicorn in this event loop on a free port (or `port`), as websockets' own tests do.

    Given settings rather than an app, the app is made for them once the port is bound, with
    that address as its public URL (unless they name one): payment redirects and the gateway's
    webhooks then come back to this server, and its pages are the trusted origin."""
    sock: socket.socket | None = None
    if isinstance(app, Settings):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        bound = sock.getsockname()[1]
        settings = app
        if settings.public_url is None:
            settings = replace(settings, public_url=f"http://127.0.0.1:{bound}")
        if ws_max_size is None:
            ws_max_size = settings.ws_max_message
        app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        access_log=False,
        ws_max_size=16 * 1024 if ws_max_size is None else ws_max_size,
    )
    server = uvicorn.Server(config)
    # uvicorn would take over SIGINT/SIGTERM; the test runner keeps its own.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=None if sock is None else [sock]))
    try:
        async with asyncio.timeout(10 * TIMEOUT_FACTOR):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app.state.runtime)
    finally:
        server.should_exit = True
        await task
        if sock is not None:
            sock.close()


@pytest.fixture
async def server(settings: Settings, rt: Runtime) -> AsyncIterator[Server]:
    async with running(settings) as srv:
        yield srv


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http, timeout=10 * TIMEOUT_FACTOR) as c:
        yield c


def shared_per_module() -> tuple[object, ...]:
    """`settings`, `rt`, `server` and `client` fixtures scoped to one test module.

    For tables whose rows each send a request that is refused and writes nothing: the rows share
    one database, runtime and server instead of paying for their own (a second or more each).
    A module opts in with `settings, rt, server, client = shared_per_module()`; a row that
    changes state does not belong in such a module.
    """

    @pytest.fixture(scope="module", name="settings")
    async def module_settings(
        pg_url: str, template_db: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[Settings]:
        async with _database(pg_url, template_db) as url:
            yield _settings(url, redis_url, tmp_path_factory.mktemp("shared"))

    @pytest.fixture(scope="module", name="rt")
    async def module_rt(settings: Settings) -> AsyncIterator[Runtime]:
        async with _runtime(settings) as runtime:
            yield runtime

    @pytest.fixture(scope="module", name="server")
    async def module_server(settings: Settings, rt: Runtime) -> AsyncIterator[Server]:
        async with running(settings) as srv:
            yield srv

    @pytest.fixture(scope="module", name="client")
    async def module_client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(base_url=server.http, timeout=10 * TIMEOUT_FACTOR) as c:
            yield c

    return module_settings, module_rt, module_server, module_client


@pytest.fixture
def make_settings(settings: Settings) -> object:
    """For tests that need a variant: `make_settings(hold_ttl=1)`."""

    def make(**changes: object) -> Settings:
        return replace(settings, **changes)  # type: ignore[arg-type]

    return make
