"""The durable event log that evaluation is built on.

Lifecycle events are committed (fsync'd by SQLite in FULL mode) before `append` returns, so an
event whose request was answered survives a crash. Events hold pseudonymous ids only.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, TypeVar

from rooms.ids import ParticipantId, VisitId

T = TypeVar("T")


class EventKind(StrEnum):
    VISIT_CREATED = "visit-created"
    VISIT_OPENED = "visit-opened"
    VISIT_STARTED = "visit-started"
    VISIT_ENDED = "visit-ended"
    PARTICIPANT_JOINED = "participant-joined"
    PARTICIPANT_LEFT = "participant-left"
    PARTICIPANT_RECONNECTED = "participant-reconnected"
    MEDIA_FIRST_FRAME = "media-first-frame"
    MEDIA_FAILED = "media-failed"


@dataclass(frozen=True)
class VisitEvent:
    visit: VisitId
    kind: EventKind
    participant: ParticipantId | None = None
    role: str | None = None
    sector: str | None = None
    org: str | None = None
    data: dict[str, object] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class EventLog(Protocol):
    async def append(self, event: VisitEvent) -> None: ...

    async def for_visit(self, visit: VisitId) -> list[VisitEvent]: ...

    async def close(self) -> None: ...


SCHEMA: Sequence[str] = (
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
)


class SqliteEventLog:
    """SQLite behind a single worker thread, so the event loop never blocks on disk."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventlog")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            conn.execute(statement)
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def append(self, event: VisitEvent) -> None:
        await self._run(self._append_sync, event)

    def _append_sync(self, event: VisitEvent) -> None:
        assert self._conn is not None, "event log not open"
        self._conn.execute(
            "INSERT INTO events (time, visit, kind, participant, role, sector, org, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.time,
                event.visit,
                event.kind.value,
                event.participant,
                event.role,
                event.sector,
                event.org,
                json.dumps(event.data, sort_keys=True),
            ),
        )

    async def for_visit(self, visit: VisitId) -> list[VisitEvent]:
        rows = await self._run(self._for_visit_sync, visit)
        return [
            VisitEvent(
                time=row[0],
                visit=VisitId(row[1]),
                kind=EventKind(row[2]),
                participant=ParticipantId(row[3]) if row[3] else None,
                role=row[4],
                sector=row[5],
                org=row[6],
                data=json.loads(row[7]),
            )
            for row in rows
        ]

    def _for_visit_sync(
        self, visit: VisitId
    ) -> list[tuple[float, str, str, str | None, str | None, str | None, str | None, str]]:
        assert self._conn is not None, "event log not open"
        cursor = self._conn.execute(
            "SELECT time, visit, kind, participant, role, sector, org, data FROM events"
            " WHERE visit = ? ORDER BY id",
            (visit,),
        )
        return cursor.fetchall()

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
