"""A small SQL layer over SQLite (the embedded default) and PostgreSQL (configured by URL).

Callers write each statement once, with `?` placeholders; the PostgreSQL backend rewrites them
to `$1, $2, ...` by position. The rewrite is deliberately naive: our SQL never has a `?` inside
a string literal, a quoted identifier or a comment, and must keep it that way.

Every `execute` is committed (and, on SQLite, fsync'd) before it returns. Every call has a
bound (`DbTimeouts`): a database that is down or black-holed costs a caller one timeout
(`TimeoutError`), never the length of the outage.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, TypeVarTuple
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]

from rooms.private_files import private_sqlite_files

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

Row = tuple[Any, ...]


class Database(Protocol):
    dialect: str  # "sqlite" or "postgresql"

    async def execute(self, sql: str, *params: object) -> None: ...

    async def fetch(self, sql: str, *params: object) -> list[Row]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Migration:
    """One schema step; each dialect's statements run in order, in one transaction."""

    version: int
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        # IF NOT EXISTS adopts the events table that SQLite files made before migrations had.
        sqlite=(
            """
            CREATE TABLE IF NOT EXISTS events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                visit TEXT NOT NULL,
                kind TEXT NOT NULL,
                participant TEXT,
                role TEXT,
                sector TEXT,
                org TEXT,
                data TEXT NOT NULL DEFAULT '{}'
            )
            """,
            "CREATE INDEX IF NOT EXISTS events_visit ON events (visit, time)",
        ),
        postgresql=(
            """
            CREATE TABLE events (
                id BIGSERIAL PRIMARY KEY,
                time DOUBLE PRECISION NOT NULL,
                visit TEXT NOT NULL,
                kind TEXT NOT NULL,
                participant TEXT,
                role TEXT,
                sector TEXT,
                org TEXT,
                data TEXT NOT NULL DEFAULT '{}'
            )
            """,
            "CREATE INDEX events_visit ON events (visit, time)",
        ),
    ),
    Migration(
        2,
        sqlite=(
            """
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                subject TEXT,
                issuer TEXT,
                sector TEXT,
                org TEXT,
                role TEXT,
                action TEXT NOT NULL,
                visit TEXT,
                result TEXT NOT NULL CHECK (result IN ('allowed', 'refused')),
                reason TEXT,
                client TEXT
            )
            """,
            "CREATE INDEX audit_visit ON audit (visit, time)",
            "CREATE INDEX audit_time ON audit (time)",
        ),
        postgresql=(
            """
            CREATE TABLE audit (
                id BIGSERIAL PRIMARY KEY,
                time DOUBLE PRECISION NOT NULL,
                subject TEXT,
                issuer TEXT,
                sector TEXT,
                org TEXT,
                role TEXT,
                action TEXT NOT NULL,
                visit TEXT,
                result TEXT NOT NULL CHECK (result IN ('allowed', 'refused')),
                reason TEXT,
                client TEXT
            )
            """,
            "CREATE INDEX audit_visit ON audit (visit, time)",
            "CREATE INDEX audit_time ON audit (time)",
        ),
    ),
    Migration(
        3,
        # Revoked token ids (server/revocation.py), kept until the token would have expired.
        sqlite=(
            """
            CREATE TABLE revocations (
                jti TEXT PRIMARY KEY,
                expires_at REAL NOT NULL,
                revoked_at REAL NOT NULL
            )
            """,
            "CREATE INDEX revocations_expires ON revocations (expires_at)",
        ),
        postgresql=(
            """
            CREATE TABLE revocations (
                jti TEXT PRIMARY KEY,
                expires_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX revocations_expires ON revocations (expires_at)",
        ),
    ),
    Migration(
        4,
        # Evaluation data (rooms/quality_log.py): connection-quality samples, written in batches;
        # the clinical outcome per visit (a code); the clinician's optional note, kept apart
        # because it is free text and never exported; the citizen's experience answers.
        sqlite=(
            """
            CREATE TABLE quality (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                visit TEXT NOT NULL,
                participant TEXT NOT NULL,
                role TEXT,
                sector TEXT,
                level TEXT NOT NULL,
                rtt_ms REAL,
                loss_up REAL,
                loss_down REAL,
                jitter_ms REAL,
                bitrate_up_kbps REAL,
                bitrate_down_kbps REAL,
                fps_up REAL
            )
            """,
            "CREATE INDEX quality_visit ON quality (visit, time)",
            "CREATE INDEX quality_time ON quality (time)",
            """
            CREATE TABLE outcomes (
                visit TEXT PRIMARY KEY,
                outcome TEXT NOT NULL,
                time REAL NOT NULL
            )
            """,
            """
            CREATE TABLE outcome_notes (
                visit TEXT PRIMARY KEY,
                note TEXT NOT NULL,
                time REAL NOT NULL
            )
            """,
            """
            CREATE TABLE surveys (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                visit TEXT NOT NULL,
                participant TEXT NOT NULL,
                q1 INTEGER CHECK (q1 BETWEEN 1 AND 5),
                q2 INTEGER CHECK (q2 BETWEEN 1 AND 5),
                q3 INTEGER CHECK (q3 BETWEEN 1 AND 5)
            )
            """,
            "CREATE INDEX surveys_visit ON surveys (visit, time)",
        ),
        postgresql=(
            """
            CREATE TABLE quality (
                id BIGSERIAL PRIMARY KEY,
                time DOUBLE PRECISION NOT NULL,
                visit TEXT NOT NULL,
                participant TEXT NOT NULL,
                role TEXT,
                sector TEXT,
                level TEXT NOT NULL,
                rtt_ms DOUBLE PRECISION,
                loss_up DOUBLE PRECISION,
                loss_down DOUBLE PRECISION,
                jitter_ms DOUBLE PRECISION,
                bitrate_up_kbps DOUBLE PRECISION,
                bitrate_down_kbps DOUBLE PRECISION,
                fps_up DOUBLE PRECISION
            )
            """,
            "CREATE INDEX quality_visit ON quality (visit, time)",
            "CREATE INDEX quality_time ON quality (time)",
            """
            CREATE TABLE outcomes (
                visit TEXT PRIMARY KEY,
                outcome TEXT NOT NULL,
                time DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE outcome_notes (
                visit TEXT PRIMARY KEY,
                note TEXT NOT NULL,
                time DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE surveys (
                id BIGSERIAL PRIMARY KEY,
                time DOUBLE PRECISION NOT NULL,
                visit TEXT NOT NULL,
                participant TEXT NOT NULL,
                q1 INTEGER CHECK (q1 BETWEEN 1 AND 5),
                q2 INTEGER CHECK (q2 BETWEEN 1 AND 5),
                q3 INTEGER CHECK (q3 BETWEEN 1 AND 5)
            )
            """,
            "CREATE INDEX surveys_visit ON surveys (visit, time)",
        ),
    ),
    Migration(
        5,
        # Audit rows that stand for repeated refusals (rooms/audit.py `count`): how many, a
        # digest of the refused token (never the token), and the key that folds the repeats of
        # one address, action, reason and minute into one row (NULL, so never folded, for the
        # rows of single decisions).
        sqlite=(
            "ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE audit ADD COLUMN token TEXT",
            "ALTER TABLE audit ADD COLUMN repeat_key TEXT",
            "CREATE UNIQUE INDEX audit_repeat ON audit (repeat_key)",
        ),
        postgresql=(
            "ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE audit ADD COLUMN token TEXT",
            "ALTER TABLE audit ADD COLUMN repeat_key TEXT",
            "CREATE UNIQUE INDEX audit_repeat ON audit (repeat_key)",
        ),
    ),
    Migration(
        6,
        # Bookings (rooms/booking_archive.py): each visit as the JSON of Visit.to_dict(), the
        # record that live state (memory or Redis) is rebuilt from; `revision` orders writes.
        sqlite=(
            """
            CREATE TABLE bookings (
                visit TEXT PRIMARY KEY,
                org TEXT NOT NULL,
                state TEXT NOT NULL,
                planned_start REAL,
                revision INTEGER NOT NULL,
                updated_at REAL NOT NULL,
                data TEXT NOT NULL
            )
            """,
            "CREATE INDEX bookings_org ON bookings (org)",
            "CREATE INDEX bookings_state ON bookings (state, updated_at)",
        ),
        postgresql=(
            """
            CREATE TABLE bookings (
                visit TEXT PRIMARY KEY,
                org TEXT NOT NULL,
                state TEXT NOT NULL,
                planned_start DOUBLE PRECISION,
                revision BIGINT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                data TEXT NOT NULL
            )
            """,
            "CREATE INDEX bookings_org ON bookings (org)",
            "CREATE INDEX bookings_state ON bookings (state, updated_at)",
        ),
    ),
    Migration(
        7,
        # A unique id per event and audit record, made where it happens: a record written again
        # from the local outbox (rooms/outbox.py) after a timeout that had in fact committed is
        # then ignored (INSERT ... ON CONFLICT (uid) DO NOTHING). Older rows keep NULL, which
        # a unique index allows any number of.
        sqlite=(
            "ALTER TABLE events ADD COLUMN uid TEXT",
            "CREATE UNIQUE INDEX events_uid ON events (uid)",
            "ALTER TABLE audit ADD COLUMN uid TEXT",
            "CREATE UNIQUE INDEX audit_uid ON audit (uid)",
        ),
        postgresql=(
            "ALTER TABLE events ADD COLUMN uid TEXT",
            "CREATE UNIQUE INDEX events_uid ON events (uid)",
            "ALTER TABLE audit ADD COLUMN uid TEXT",
            "CREATE UNIQUE INDEX audit_uid ON audit (uid)",
        ),
    ),
    Migration(
        8,
        # Webhook deliveries (rooms/webhook_queue.py): one row per message and endpoint, the
        # message id unique per endpoint so that a message queued twice is delivered once;
        # `due` is when the next attempt may start (a claim pushes it on by a lease).
        sqlite=(
            """
            CREATE TABLE webhook_deliveries (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                message TEXT NOT NULL,
                url TEXT NOT NULL,
                type TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at REAL NOT NULL,
                due REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                state TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
                finished_at REAL,
                last_error TEXT
            )
            """,
            "CREATE UNIQUE INDEX webhook_message ON webhook_deliveries (message, url)",
            "CREATE INDEX webhook_due ON webhook_deliveries (state, due)",
        ),
        postgresql=(
            """
            CREATE TABLE webhook_deliveries (
                id BIGSERIAL PRIMARY KEY,
                message TEXT NOT NULL,
                url TEXT NOT NULL,
                type TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                due DOUBLE PRECISION NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                state TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
                finished_at DOUBLE PRECISION,
                last_error TEXT
            )
            """,
            "CREATE UNIQUE INDEX webhook_message ON webhook_deliveries (message, url)",
            "CREATE INDEX webhook_due ON webhook_deliveries (state, due)",
        ),
    ),
    Migration(
        9,
        # The EHR's reference to each seat's person (rooms/actor_refs.py: "Patient/123",
        # "Practitioner/abc"), from a FHIR Appointment; deleted when the visit is over.
        sqlite=(
            """
            CREATE TABLE actor_refs (
                visit TEXT NOT NULL,
                participant TEXT NOT NULL,
                org TEXT NOT NULL,
                reference TEXT NOT NULL,
                PRIMARY KEY (visit, participant)
            )
            """,
            "CREATE INDEX actor_refs_reference ON actor_refs (org, reference)",
        ),
        postgresql=(
            """
            CREATE TABLE actor_refs (
                visit TEXT NOT NULL,
                participant TEXT NOT NULL,
                org TEXT NOT NULL,
                reference TEXT NOT NULL,
                PRIMARY KEY (visit, participant)
            )
            """,
            "CREATE INDEX actor_refs_reference ON actor_refs (org, reference)",
        ),
    ),
    Migration(
        10,
        # One-time console sign-in links (`screenvisit console-link`): the first use inserts
        # the link's jti; any later use finds it taken. Rows are deleted once the link expired.
        sqlite=("CREATE TABLE console_link_uses (jti TEXT PRIMARY KEY, expires_at REAL NOT NULL)",),
        postgresql=(
            "CREATE TABLE console_link_uses"
            " (jti TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL)",
        ),
    ),
)

SCHEMA_VERSION_SQLITE = (
    "CREATE TABLE IF NOT EXISTS schema_version"
    " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
)
SCHEMA_VERSION_POSTGRESQL = (
    "CREATE TABLE IF NOT EXISTS schema_version"
    " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)
SQLITE_BUSY_TIMEOUT_SECONDS = 10.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
SQLITE_GRACE_SECONDS = 1.0
#: Migrations may rebuild an index over a large table, or wait for another starter's migration:
#: they are not held to the statement timeout, only to this.
MIGRATION_TIMEOUT_SECONDS = 3600.0
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 5.0
# Key of the transaction-scoped advisory lock that serialises migrations across processes.
MIGRATION_LOCK_KEY = 0x73637265656E7631  # "screenv1"


@dataclass(frozen=True)
class DbTimeouts:
    """Seconds a connection (PostgreSQL: connect, or wait for a pooled connection) and one
    statement (SQLite: its busy wait and its turn on the worker thread) may take."""

    connect: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    statement: float = DEFAULT_STATEMENT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not (self.connect > 0 and self.statement > 0):
            raise ValueError("database timeouts must be positive")


def numbered_placeholders(sql: str) -> str:
    """Rewrite each `?` to `$1, $2, ...` in order (see the module docstring for the limits)."""
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, retrying while another connection holds the lock.

    Changing the journal mode fails at once with SQLITE_BUSY (the busy timeout does not apply)
    when another process opens the same new file at the same moment.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.01)  # on the database's worker thread, never the event loop


class SqliteDatabase:
    """sqlite3 on one dedicated worker thread, so the event loop never waits on the disk.

    Autocommit, WAL and `synchronous=FULL`: a write that returned survives a crash.
    Call `open` before use.
    """

    dialect = "sqlite"

    def __init__(self, path: Path, timeouts: DbTimeouts | None = None) -> None:
        self._path = path
        self._timeouts = timeouts or DbTimeouts()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._conn = await self._run(self._open_sync)

    def _open_sync(self) -> sqlite3.Connection:
        private_sqlite_files(self._path)
        conn = sqlite3.connect(
            self._path,
            timeout=self._timeouts.statement,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _bounded(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """`_run` within the statement timeout (and a second's grace, so that a busy wait
        reports SQLite's own "database is locked" first); a statement still running then is
        interrupted, and one still queued behind it never starts.

        `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` loses a cancellation that
        arrives as the statement finishes, and the cancelled caller then runs on."""
        try:
            async with asyncio.timeout(self._timeouts.statement + SQLITE_GRACE_SECONDS):
                return await self._run(fn, *args)
        except TimeoutError:
            if self._conn is not None:
                self._conn.interrupt()  # thread-safe: the statement fails with "interrupted"
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the SQLite database is not open")
        return self._conn

    async def execute(self, sql: str, *params: object) -> None:
        await self._bounded(self._execute_sync, sql, params)

    def _execute_sync(self, sql: str, params: tuple[object, ...]) -> None:
        self._connection().execute(sql, params)

    async def fetch(self, sql: str, *params: object) -> list[Row]:
        return await self._bounded(self._fetch_sync, sql, params)

    def _fetch_sync(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return self._connection().execute(sql, params).fetchall()

    async def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply the migrations not yet recorded; return the versions applied now."""
        return await self._run(self._migrate_sync, migrations)

    def _migrate_sync(self, migrations: Sequence[Migration]) -> list[int]:
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout = {int(MIGRATION_TIMEOUT_SECONDS * 1000)}")
        try:
            return self._migrate_locked(conn, migrations)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeouts.statement * 1000)}")

    def _migrate_locked(
        self, conn: sqlite3.Connection, migrations: Sequence[Migration]
    ) -> list[int]:
        applied: list[int] = []
        for migration in migrations:
            # IMMEDIATE takes the write lock up front: a second process waits, then sees the row.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(SCHEMA_VERSION_SQLITE)
                done = conn.execute(
                    "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
                ).fetchone()
                if done is None:
                    for statement in migration.sqlite:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                        (migration.version, time.time()),
                    )
                    applied.append(migration.version)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return applied

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)
        # The worker is idle now, so this neither blocks nor drops work.
        self._executor.shutdown(wait=False)


class PostgresDatabase:
    """An asyncpg pool; every `execute` runs in its own implicit transaction, committed on return.

    Waiting for a pooled connection, connecting and each statement are bounded by `timeouts`.
    A connection on which a statement timed out or lost the network is terminated rather than
    returned: resetting it would wait on the same dead route. Call `open` before use.
    """

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        # No floor: asyncpg would keep reconnecting to it in the background through an outage,
        # logging a traceback each time; connections are made when needed, within the timeout.
        min_size: int = 0,
        max_size: int = 5,
        timeouts: DbTimeouts | None = None,
    ) -> None:
        self._url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeouts = timeouts or DbTimeouts()
        self._pool: Any = None  # asyncpg.Pool (asyncpg ships no type hints)

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeouts.connect,
            command_timeout=self._timeouts.statement,
        )

    async def _call(self, method: str, sql: str, params: tuple[object, ...]) -> Any:
        pool = self._require_pool()
        timeout = self._timeouts.statement
        # A new connection may be made here: the wait covers connecting too.
        conn = await pool.acquire(timeout=self._timeouts.connect + timeout)
        try:
            result = await getattr(conn, method)(sql, *params, timeout=timeout)
        except BaseException as exc:
            if _connection_suspect(exc):
                conn.terminate()
            await pool.release(conn, timeout=timeout)
            raise
        await pool.release(conn, timeout=timeout)
        return result

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL database is not open")
        return self._pool

    async def execute(self, sql: str, *params: object) -> None:
        await self._call("execute", numbered_placeholders(sql), params)

    async def fetch(self, sql: str, *params: object) -> list[Row]:
        records = await self._call("fetch", numbered_placeholders(sql), params)
        return [tuple(record) for record in records]

    async def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply the migrations not yet recorded; return the versions applied now."""
        applied: list[int] = []
        pool = self._require_pool()
        long = MIGRATION_TIMEOUT_SECONDS
        async with pool.acquire(timeout=self._timeouts.connect + self._timeouts.statement) as conn:
            for migration in migrations:
                async with conn.transaction():
                    # Held until this transaction ends: concurrent starters apply each step once.
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=long
                    )
                    await conn.execute(SCHEMA_VERSION_POSTGRESQL, timeout=long)
                    done = await conn.fetchval(
                        "SELECT 1 FROM schema_version WHERE version = $1",
                        migration.version,
                        timeout=long,
                    )
                    if done is None:
                        for statement in migration.postgresql:
                            await conn.execute(statement, timeout=long)
                        await conn.execute(
                            "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                            migration.version,
                            time.time(),
                            timeout=long,
                        )
                        applied.append(migration.version)
        return applied

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(self._timeouts.statement):
                    await pool.close()
            except TimeoutError:
                pool.terminate()  # a connection on a dead route never answers the goodbye


def _connection_suspect(exc: BaseException) -> bool:
    """True unless the server itself answered with an error (the connection is then fine)."""
    return not isinstance(exc, asyncpg.PostgresError) or isinstance(
        exc, asyncpg.PostgresConnectionError
    )


async def open_database(
    url: str | None, sqlite_path: Path, timeouts: DbTimeouts | None = None
) -> Database:
    """Open SQLite at `sqlite_path` when `url` is empty, else PostgreSQL; migrate it; return it."""
    db: SqliteDatabase | PostgresDatabase
    if not url:
        db = SqliteDatabase(sqlite_path, timeouts)
    else:
        scheme = urlsplit(url).scheme
        if scheme not in ("postgresql", "postgres"):
            # Name only the scheme: the rest of the URL may hold a password.
            raise ValueError(
                f"unsupported database URL scheme {scheme!r}: use postgresql://... for"
                " PostgreSQL, or leave the URL empty for the embedded SQLite file"
            )
        db = PostgresDatabase(url, timeouts=timeouts)
    try:
        await db.open()
        await db.migrate(MIGRATIONS)
    except BaseException:
        await db.close()
        raise
    return db
