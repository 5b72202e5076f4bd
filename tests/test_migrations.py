"""The migration runner: each file once, in order, atomically, even with racing processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from seatmap.db import MIGRATION_LOCK, Connection, load_migrations, migrate


@pytest.fixture
async def fresh_db(pg_url: str) -> AsyncIterator[str]:
    """An empty database (not cloned from the migrated template)."""
    name = f"seatmap_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield urlunsplit(urlsplit(pg_url)._replace(path="/" + name))
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def conn(fresh_db: str) -> AsyncIterator[Connection]:
    connection = await asyncpg.connect(fresh_db)
    try:
        yield connection
    finally:
        await connection.close()


async def recorded(conn: Connection) -> list[int]:
    return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]


async def tables(conn: Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_fresh_database_gets_every_migration_once(conn: Connection) -> None:
    """On an empty database every file in sql/ is applied, in order, and recorded once."""
    versions = [m.version for m in load_migrations()]
    assert versions and versions == sorted(versions)
    assert await migrate(conn) == versions
    assert await recorded(conn) == versions
    assert {"users", "schema_migrations"} <= await tables(conn)


async def test_second_run_applies_nothing(conn: Connection) -> None:
    """Running migrate again on an up-to-date database changes nothing."""
    await migrate(conn)
    before = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert await migrate(conn) == []
    assert await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version") == before


async def test_concurrent_runs_apply_each_file_exactly_once(fresh_db: str) -> None:
    """Two processes starting at once (separate connections) split the work without errors."""
    versions = [m.version for m in load_migrations()]
    connections = [await asyncpg.connect(fresh_db) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
        assert sorted(results[0] + results[1]) == versions
        assert not set(results[0]) & set(results[1])
        assert await recorded(connections[0]) == versions
        # Each one finished with the lock released: a third run goes straight through.
        assert await asyncio.wait_for(migrate(connections[1]), timeout=5) == []
    finally:
        for c in connections:
            await c.close()


async def test_waiting_runner_sees_what_the_first_applied(fresh_db: str, tmp_path: Path) -> None:
    """A runner that waited for the lock applies only what the lock holder did not."""
    directory = write(tmp_path / "sql", {"0001_a.sql": "CREATE TABLE a (id int)", "0002_b.sql": "SELECT 1"})
    migrations = load_migrations(directory)
    holder, waiter = await asyncpg.connect(fresh_db), await asyncpg.connect(fresh_db)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        waiting = asyncio.create_task(migrate(waiter, migrations))
        await asyncio.sleep(0.2)
        assert not waiting.done(), "migrate did not wait for the advisory lock"
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        assert await asyncio.wait_for(waiting, timeout=5) == [1, 2]
    finally:
        await holder.close()
        await waiter.close()


async def test_broken_migration_rolls_back_and_records_nothing(conn: Connection, tmp_path: Path) -> None:
    """A file that fails half-way leaves none of its changes and no record; earlier files stay."""
    directory = write(
        tmp_path / "sql",
        {
            "0001_good.sql": "CREATE TABLE good (id int PRIMARY KEY);",
            "0002_broken.sql": (
                "CREATE TABLE half (id int);\nINSERT INTO good VALUES (1);\nSELECT no_such_function();\n"
            ),
            "0003_later.sql": "CREATE TABLE later (id int);",
        },
    )
    migrations = load_migrations(directory)
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(conn, migrations)
    assert await recorded(conn) == [1]
    assert await tables(conn) == {"schema_migrations", "good"}
    assert await conn.fetchval("SELECT count(*) FROM good") == 0
    # Fixed, the same runner (lock released despite the failure) picks up where it stopped.
    (directory / "0002_broken.sql").write_text("CREATE TABLE half (id int);")
    assert await asyncio.wait_for(migrate(conn, load_migrations(directory)), timeout=5) == [2, 3]
    assert await recorded(conn) == [1, 2, 3]


def test_badly_named_or_duplicate_files_are_refused(tmp_path: Path) -> None:
    """A file not named NNNN_name.sql, or two files with one number, stop the runner early."""
    bad_name = write(tmp_path / "a", {"1_init.sql": "SELECT 1"})
    with pytest.raises(RuntimeError, match="NNNN_name"):
        load_migrations(bad_name)
    duplicate = write(tmp_path / "b", {"0001_a.sql": "SELECT 1", "0001_b.sql": "SELECT 2"})
    with pytest.raises(RuntimeError, match="duplicate"):
        load_migrations(duplicate)
