import asyncio
import sqlite3
from pathlib import Path

import pytest

from rooms.eventlog import EventKind, SqlEventLog
from rooms.ids import VisitId
from rooms.sql import MIGRATIONS, Database, numbered_placeholders, open_database
from tests.sqlbackends import Backend, backend, database  # noqa: F401

ALL_VERSIONS = [m.version for m in MIGRATIONS]


async def versions(db: Database) -> list[int]:
    return [row[0] for row in await db.fetch("SELECT version FROM schema_version ORDER BY version")]


def test_migrations_are_numbered_in_order() -> None:
    assert ALL_VERSIONS == list(range(1, len(MIGRATIONS) + 1))


def test_placeholders_are_numbered_in_order() -> None:
    assert numbered_placeholders("SELECT a FROM t WHERE b = ? AND c IN (?, ?)") == (
        "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
    )
    assert numbered_placeholders("SELECT 1") == "SELECT 1"


async def test_migrations_apply_once_and_reopen_is_idempotent(backend: Backend) -> None:  # noqa: F811
    db = await backend.open()
    assert db.dialect == backend.name
    assert await versions(db) == ALL_VERSIONS
    await db.execute(
        "INSERT INTO audit (time, action, result) VALUES (?, ?, ?)", 1.0, "join", "allowed"
    )
    await db.close()

    reopened = await backend.open()
    try:
        assert await versions(reopened) == ALL_VERSIONS
        assert await reopened.fetch("SELECT action, result FROM audit") == [("join", "allowed")]
    finally:
        await reopened.close()


async def test_concurrent_openers_migrate_once(backend: Backend) -> None:  # noqa: F811
    opened = await asyncio.gather(*(backend.open() for _ in range(4)))
    try:
        for db in opened:
            assert await versions(db) == ALL_VERSIONS
    finally:
        for db in opened:
            await db.close()


async def test_parameters_bind_by_position(database: Database) -> None:  # noqa: F811
    await database.execute(
        "INSERT INTO events (time, visit, kind, org) VALUES (?, ?, ?, ?)",
        2.5,
        "v-1",
        "visit-created",
        "o",
    )
    rows = await database.fetch(
        "SELECT time, kind, org, data FROM events WHERE visit = ? AND time >= ?", "v-1", 2.0
    )
    assert rows == [(2.5, "visit-created", "o", "{}")]
    assert await database.fetch("SELECT kind FROM events WHERE visit = ?", "v-2") == []


def make_legacy_event_file(path: Path) -> None:
    """An SQLite file as the event log wrote it before migrations existed."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,"
        " visit TEXT NOT NULL, kind TEXT NOT NULL, participant TEXT, role TEXT, sector TEXT,"
        " org TEXT, data TEXT NOT NULL DEFAULT '{}')"
    )
    conn.execute("CREATE INDEX events_visit ON events (visit, time)")
    conn.execute("INSERT INTO events (time, visit, kind) VALUES (1.0, 'v-old', 'visit-created')")
    conn.commit()
    conn.close()


async def test_sqlite_file_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "legacy.sqlite3"
    await asyncio.to_thread(make_legacy_event_file, path)
    db = await open_database(None, path)
    try:
        assert await versions(db) == ALL_VERSIONS
        events = await SqlEventLog(db).for_visit(VisitId("v-old"))
        assert [e.kind for e in events] == [EventKind.VISIT_CREATED]
    finally:
        await db.close()


@pytest.mark.parametrize(
    "url", ["mysql://u@localhost/db", "sqlite:///tmp/x.sqlite3", "127.0.0.1:5432/postgres"]
)
async def test_url_that_is_not_postgresql_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        await open_database(url, tmp_path / "unused.sqlite3")
    assert not (tmp_path / "unused.sqlite3").exists()


async def test_empty_url_opens_sqlite(tmp_path: Path) -> None:
    db = await open_database("", tmp_path / "data" / "screenvisit.sqlite3")
    try:
        assert db.dialect == "sqlite"
        assert (tmp_path / "data" / "screenvisit.sqlite3").exists()
    finally:
        await db.close()


async def test_revocations_table_keys_on_jti(database: Database) -> None:  # noqa: F811
    insert = "INSERT INTO revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)"
    await database.execute(insert, "j-1", 200.0, 100.0)
    assert await database.fetch("SELECT jti, expires_at FROM revocations") == [("j-1", 200.0)]
    with pytest.raises(Exception, match=r"(?i)unique"):
        await database.execute(insert, "j-1", 300.0, 100.0)
