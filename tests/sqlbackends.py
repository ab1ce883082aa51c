"""Run the same tests on SQLite and on the real PostgreSQL server.

PostgreSQL tests each get a fresh database, created through the maintenance URL
(`SCREENVISIT_TEST_POSTGRES_URL`, default below) and dropped afterwards. A PostgreSQL server that
cannot be reached fails the tests: it is never skipped and never mocked.

In a test module: `from tests.sqlbackends import backend, database  # noqa: F401`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from rooms.sql import Database, PostgresDatabase, open_database

BACKENDS = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def maintenance_url() -> str:
    return os.environ.get("SCREENVISIT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@dataclass(frozen=True)
class Backend:
    """Where one test's database lives; `open` may be called again to reopen the same data."""

    name: str
    url: str | None
    sqlite_path: Path

    async def open(self) -> Database:
        return await open_database(self.url, self.sqlite_path)


@asynccontextmanager
async def backend_for(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty location for `name`: a file under `tmp_path`, or a new PostgreSQL database."""
    sqlite_path = tmp_path / "screenvisit.sqlite3"
    if name == "sqlite":
        yield Backend(name, None, sqlite_path)
        return
    if name != "postgresql":
        raise ValueError(f"unknown backend {name!r}")
    admin_url = maintenance_url()
    db_name = f"sv_test_{secrets.token_hex(6)}"
    admin = PostgresDatabase(admin_url, max_size=1)
    await admin.open()
    try:
        await admin.execute(f"CREATE DATABASE {db_name}")
        try:
            url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{db_name}"))
            yield Backend(name, url, sqlite_path)
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    finally:
        await admin.close()


@asynccontextmanager
async def database_for(name: str, tmp_path: Path) -> AsyncIterator[Database]:
    """An open, migrated, empty database of backend `name`, closed and removed afterwards."""
    async with backend_for(name, tmp_path) as location:
        db = await location.open()
        try:
            yield db
        finally:
            await db.close()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as location:
        yield location


@pytest.fixture
async def database(backend: Backend) -> AsyncIterator[Database]:
    db = await backend.open()
    try:
        yield db
    finally:
        await db.close()
