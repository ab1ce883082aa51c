"""Records that must not be lost when the database is: events, outcomes and the audit trail.

`DurableWriter.write` commits a record to the database, or, when the database fails or times out
(or the outbox already holds records, whose order it keeps), appends it to the local outbox
(rooms/outbox.py), fsync'd. Either way the record is durable when `write` returns; only when
both fail does it raise `NotDurable`. One background task, owned by whoever calls `start` and
ended by `stop`, writes the outbox to the database once it answers again, and probes it now
and then so that /healthz can say it is unreachable before anything is written.

Every record kind is idempotent to write: events and audit records carry a unique `uid`
(migration 7: `ON CONFLICT (uid) DO NOTHING`), an outcome replaces the visit's outcome. So a
write that timed out but had committed, and a replay cut short, store each record once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from rooms.audit import AuditRecord, SqlAuditLog
from rooms.errors import NotDurable
from rooms.eventlog import SqlEventLog, VisitEvent
from rooms.outbox import FileOutbox
from rooms.quality_log import OutcomeStore
from rooms.sql import Database

logger = logging.getLogger(__name__)

DATABASE: Final = "database"
OUTBOX: Final = "outbox"

DEFAULT_PROBE_INTERVAL_SECONDS: Final = 5.0
RETRY_MIN_SECONDS: Final = 0.5
RETRY_MAX_SECONDS: Final = 5.0

Write = Callable[[dict[str, Any]], Awaitable[None]]

#: What a database that is down, unreachable, full or too slow raises (through rooms/sql.py).
DATABASE_DOWN: Final = (
    TimeoutError,
    OSError,
    sqlite3.OperationalError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _bad_record(exc: BaseException) -> bool:
    """The database answered and refused this record: writing it again would not help."""
    return isinstance(
        exc,
        (
            KeyError,
            TypeError,
            ValueError,
            sqlite3.IntegrityError,
            asyncpg.IntegrityConstraintViolationError,
            asyncpg.DataError,
        ),
    )


class DurableWriter:
    def __init__(
        self,
        db: Database,
        outbox: FileOutbox,
        *,
        probe_interval: float = DEFAULT_PROBE_INTERVAL_SECONDS,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._probe_interval = probe_interval
        self._writes: dict[str, Write] = {}
        self._reachable = True
        self._wake = asyncio.Event()
        self._replay_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        #: Records neither the database nor the outbox took (each also logged as an error).
        self.lost = 0

    def register(self, kind: str, write: Write) -> None:
        """How to write a record of `kind` (a JSON object) to the database, idempotently."""
        self._writes[kind] = write

    @property
    def pending(self) -> int:
        return self._outbox.pending

    @property
    def database_reachable(self) -> bool:
        return self._reachable

    def reasons(self) -> list[str]:
        """Why the record is not in a normal state, for /healthz; empty when it is."""
        reasons = [] if self._reachable else ["database-unreachable"]
        if self._outbox.pending:
            reasons.append(f"outbox-pending: {self._outbox.pending}")
        return reasons

    def _failed(self, exc: BaseException) -> None:
        if self._reachable:
            logger.warning(
                "database unreachable (%s): records go to the outbox in %s until it is back",
                _describe(exc),
                self._outbox.folder,
            )
        self._reachable = False

    def _answered(self) -> None:
        if not self._reachable:
            logger.info("database reachable again")
        self._reachable = True

    async def write(self, kind: str, record: dict[str, Any]) -> str:
        """Store `record` durably; return DATABASE or OUTBOX, or raise NotDurable."""
        write = self._writes[kind]
        tried = False
        if self._reachable and not self._outbox.pending:
            tried = True
            try:
                await write(record)
                return DATABASE
            except Exception as exc:
                if _bad_record(exc):
                    raise
                self._failed(exc)
        try:
            await self._outbox.append({"kind": kind, "record": record})
        except OSError as exc:
            if not tried:
                with contextlib.suppress(Exception):
                    await write(record)
                    return DATABASE
            self.lost += 1
            logger.error(
                "a record (%s) was not saved: database and outbox both failed (%s)", kind, exc
            )
            raise NotDurable("the record could not be saved; try again") from None
        self._wake.set()
        return OUTBOX

    async def replay(self) -> int:
        """Write everything in the outbox to the database, oldest first; return how many.
        Raises (leaving the outbox as it was) when the database fails."""
        written = 0
        async with self._replay_lock:
            while self._outbox.pending:
                entries = await self._outbox.take()
                for entry in entries:
                    write = self._writes.get(str(entry.get("kind")))
                    try:
                        if write is None:
                            raise KeyError(f"unknown record kind {entry.get('kind')!r}")
                        await write(dict(entry["record"]))
                    except Exception as exc:
                        if not _bad_record(exc):
                            raise
                        self.lost += 1
                        logger.error("outbox: dropped a record the database refused (%s)", exc)
                await self._outbox.taken()
                written += len(entries)
                if not entries:
                    break
        if written:
            logger.info("outbox: wrote %d record(s) to the database", written)
        self._answered()
        return written

    async def _probe(self) -> None:
        try:
            await self._db.fetch("SELECT 1")
        except Exception as exc:
            self._failed(exc)
        else:
            self._answered()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("durable writer already started")
        self._task = asyncio.create_task(self._run(), name="outbox-replay")

    async def stop(self) -> None:
        """End the background task; what is left in the outbox is replayed at the next start."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            if self._outbox.pending:
                try:
                    await self.replay()
                    delay = RETRY_MIN_SECONDS
                except Exception as exc:
                    self._failed(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            self._wake.clear()
            if self._outbox.pending:
                continue
            try:
                async with asyncio.timeout(self._probe_interval):
                    await self._wake.wait()
            except TimeoutError:
                await self._probe()


class DurableEventLog(SqlEventLog):
    """The event log, through a `DurableWriter`; reads go to the database.

    Listeners (`subscribe`) hear each event once it is durable, in the caller's stack: they
    must be quick and must not block (queue the work, as webhooks do, or write a log line)."""

    def __init__(self, db: Database, writer: DurableWriter) -> None:
        super().__init__(db)
        self._writer = writer
        self._listeners: list[Callable[[VisitEvent], None]] = []
        writer.register("event", lambda raw: SqlEventLog.append(self, VisitEvent.from_json(raw)))

    def subscribe(self, listener: Callable[[VisitEvent], None]) -> None:
        self._listeners.append(listener)

    async def append(self, event: VisitEvent) -> None:
        await self._writer.write("event", event.to_json())
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                # A listener's bug must not fail the lifecycle step that was already recorded.
                logger.exception("event listener failed on %s", event.kind.value)


class DurableAuditLog(SqlAuditLog):
    """The audit log, through a `DurableWriter`; queries go to the database."""

    def __init__(self, db: Database, writer: DurableWriter) -> None:
        super().__init__(db)
        self._writer = writer
        writer.register("audit", lambda raw: SqlAuditLog.record(self, AuditRecord(**raw)))

    async def record(self, record: AuditRecord) -> None:
        await self._writer.write("audit", dataclasses.asdict(record))


class DurableOutcomeStore(OutcomeStore):
    """Outcomes (with the clinician's note), through a `DurableWriter`."""

    def __init__(self, db: Database, writer: DurableWriter) -> None:
        super().__init__(db)
        self._writer = writer
        writer.register("outcome", self._write)

    async def _write(self, raw: dict[str, Any]) -> None:
        await OutcomeStore.record(
            self, str(raw["visit"]), str(raw["outcome"]), raw.get("note"), float(raw["time"])
        )

    async def record(self, visit: str, outcome: str, note: str | None, time: float) -> None:
        await self._writer.write(
            "outcome", {"visit": visit, "outcome": outcome, "note": note, "time": time}
        )
