"""Every SQL call is bounded: a database that stops answering costs one timeout, not an outage.

Real faults only: PostgreSQL behind a TCP proxy that this test cuts or black-holes, SQLite held
by another connection's lock or busy with a statement that never ends.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from rooms.sql import DbTimeouts, PostgresDatabase, SqliteDatabase, open_database
from tests.faults.tcpproxy import TcpProxy
from tests.sqlbackends import backend_for

TIMEOUTS = DbTimeouts(connect=1.0, statement=1.0)
#: One timeout, and room for a loaded machine.
BOUND = 3.5


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A fresh PostgreSQL database, reached through a proxy: (the proxy, the proxied URL)."""
    async with backend_for("postgresql", tmp_path) as backend:
        assert backend.url is not None
        # Migrated directly, so the proxied connections below only run the statements tested.
        db = await open_database(backend.url, tmp_path / "unused")
        await db.close()
        target = urlsplit(backend.url)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        port = await proxy.start()
        netloc = f"{target.username}@127.0.0.1:{port}"
        try:
            yield proxy, urlunsplit(target._replace(netloc=netloc))
        finally:
            await proxy.close()


@pytest.mark.parametrize("outage", ["cut", "blackhole"])
async def test_postgresql_calls_end_within_the_timeout(
    proxied: tuple[TcpProxy, str], outage: str
) -> None:
    proxy, url = proxied
    db = PostgresDatabase(url, timeouts=TIMEOUTS)
    await db.open()
    try:
        await db.execute(
            "INSERT INTO revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)", "a", 1.0, 1.0
        )
        proxy.cut() if outage == "cut" else proxy.blackhole()
        for attempt in range(3):  # the pooled connection, then new ones
            start = time.monotonic()
            with pytest.raises(
                (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
            ):
                await db.fetch("SELECT jti FROM revocations")
            assert time.monotonic() - start < BOUND, (attempt, time.monotonic() - start)
        proxy.forward()
        assert await db.fetch("SELECT jti FROM revocations") == [("a",)]
        proxy.blackhole()  # closing must not wait on the pooled connection's dead route
    finally:
        start = time.monotonic()
        await db.close()
        assert time.monotonic() - start < BOUND


async def test_sqlite_waits_for_a_lock_no_longer_than_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = await open_database(None, path, TIMEOUTS)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        start = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await db.execute("INSERT INTO revocations VALUES (?, ?, ?)", "a", 1.0, 1.0)
        assert 0.5 < time.monotonic() - start < BOUND
        other.execute("ROLLBACK")
        await db.execute("INSERT INTO revocations VALUES (?, ?, ?)", "a", 1.0, 1.0)
    finally:
        other.close()
        await db.close()


async def test_a_sqlite_statement_that_never_ends_is_interrupted(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite3", TIMEOUTS)
    await db.open()
    try:
        endless = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
        )
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await db.fetch(endless)
        assert time.monotonic() - start < BOUND
        # The worker thread is free again: the next statement runs at once.
        start = time.monotonic()
        assert await db.fetch("SELECT 1") == [(1,)]
        assert time.monotonic() - start < BOUND
    finally:
        await db.close()
