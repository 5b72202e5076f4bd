"""The PostgreSQL pool and the migration runner; nothing else.

Migrations are the numbered plain SQL files in `sql/` (`0001_init.sql`, …). Each one is
applied in its own transaction and recorded in `schema_migrations`; a session advisory lock
serialises runners, so several processes starting at once apply each file exactly once.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg

from seatmap import resources
from seatmap.errors import outage

log = logging.getLogger("seatmap.db")

# Generic only in asyncpg-stubs: asyncpg's own classes are not subscriptable at runtime.
if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]
    # A connection of our own or one lent by `pool.acquire()` (a proxy): queries run the same.
    AnyConnection: TypeAlias = Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
else:
    Pool = asyncpg.Pool
    Connection = asyncpg.Connection
    AnyConnection = asyncpg.Connection

# An arbitrary constant; every seatmap process uses the same one.
MIGRATION_LOCK: Final = 0x5EA7_3A9
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or resources.sql_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {directory}")
    return found


async def migrate(conn: AnyConnection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing, in order; returns the versions this call applied."""
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now


async def _init_connection(conn: Connection) -> None:
    # jsonb columns come and go as Python objects.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """The pool's reset on release, minus the reset query.

    asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL` every time a connection goes back: a round trip and four statements for PostgreSQL,
    several times per request (a paid order gave back connections about 15 times). Our code
    leaves no session state behind: no SET (only SET LOCAL), no LISTEN, cursors only inside
    transactions, the one session lock (migrations) released in a `finally`. asyncpg still
    rolls back a transaction left open before calling this.
    """


class _QuietFloorRetries(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reopen its minimum connections
    (1 s, 2 s, 4 s… apart) while PostgreSQL is away. The loops that need the database already
    say when an outage starts and ends (outage.py); an outage's retries are dropped here, any
    other failure to connect (a wrong password) is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and "pool connection floor" in record.msg:
            return outage(record.exc_info[1]) is None
        return True


_quiet_floor = _QuietFloorRetries()


async def create_pool(dsn: str, **kwargs: Any) -> Pool:
    pool_log = logging.getLogger("asyncpg.pool")
    if _quiet_floor not in pool_log.filters:
        pool_log.addFilter(_quiet_floor)
    pool = await asyncpg.create_pool(dsn, init=_init_connection, reset=_keep_session, **kwargs)
    assert pool is not None
    return pool
