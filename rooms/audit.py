"""The audit log: who was allowed or refused what, kept for a bounded time, then purged."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from rooms.periodic import Periodic
from rooms.sql import Database, Row

logger = logging.getLogger(__name__)

ALLOWED: Final = "allowed"
REFUSED: Final = "refused"

DEFAULT_RETENTION_SECONDS: Final = 183 * 24 * 3600.0  # six months
DEFAULT_PURGE_INTERVAL_SECONDS: Final = 3600.0


@dataclass(frozen=True)
class AuditRecord:
    """One access decision, by pseudonymous ids and codes.

    Never put a token or a person's name in any field.
    """

    action: str
    result: str  # ALLOWED or REFUSED
    reason: str | None = None
    subject: str | None = None
    issuer: str | None = None
    sector: str | None = None
    org: str | None = None
    role: str | None = None
    visit: str | None = None
    client: str | None = None
    time: float = field(default_factory=time.time)
    #: Unique per record, so a record written twice (from the outbox) is stored once.
    uid: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)

    def __post_init__(self) -> None:
        if self.result not in (ALLOWED, REFUSED):
            raise ValueError(f"audit result must be {ALLOWED!r} or {REFUSED!r}: {self.result!r}")


class AuditLog(Protocol):
    async def record(self, record: AuditRecord) -> None:
        """Store `record`; it is durable when this returns."""
        ...

    async def query(
        self,
        *,
        visit: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """The newest `limit` records matching every given filter, oldest first.

        `since` is inclusive, `until` exclusive.
        """
        ...

    async def purge(self, older_than: float) -> int:
        """Delete the records with `time < older_than`; return how many."""
        ...


COLUMNS: Final = "time, action, result, reason, subject, issuer, sector, org, role, visit, client"


class SqlAuditLog:
    """The `audit` table of a `Database` (migration 2); whoever opened the database closes it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, record: AuditRecord) -> None:
        await self._db.execute(
            f"INSERT INTO audit ({COLUMNS}, uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (uid) DO NOTHING",
            record.time,
            record.action,
            record.result,
            record.reason,
            record.subject,
            record.issuer,
            record.sector,
            record.org,
            record.role,
            record.visit,
            record.client,
            record.uid,
        )

    async def query(
        self,
        *,
        visit: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1: {limit}")
        conditions: list[str] = []
        params: list[object] = []
        for condition, value in (
            ("visit = ?", visit),
            ("subject = ?", subject),
            ("time >= ?", since),
            ("time < ?", until),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self._db.fetch(
            f"SELECT {COLUMNS} FROM audit{where} ORDER BY time DESC, id DESC LIMIT ?",
            *params,
            limit,
        )
        return [_from_row(row) for row in reversed(rows)]

    async def purge(self, older_than: float) -> int:
        rows = await self._db.fetch("DELETE FROM audit WHERE time < ? RETURNING id", older_than)
        return len(rows)


def _from_row(row: Row) -> AuditRecord:
    return AuditRecord(
        time=row[0],
        action=row[1],
        result=row[2],
        reason=row[3],
        subject=row[4],
        issuer=row[5],
        sector=row[6],
        org=row[7],
        role=row[8],
        visit=row[9],
        client=row[10],
    )


class AuditRetention:
    """Purges records older than `retention_seconds` at `start` and every `interval` after.

    A failed purge is logged and retried at the next interval; `stop` ends the task.
    """

    def __init__(
        self,
        audit: AuditLog,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        interval: float = DEFAULT_PURGE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_seconds <= 0 or interval <= 0:
            raise ValueError("retention and interval must be positive")
        self._audit = audit
        self._retention = retention_seconds
        self._clock = clock
        self._periodic = Periodic("audit purge", interval, self._purge)

    def start(self) -> None:
        self._periodic.start()

    async def _purge(self) -> None:
        removed = await self._audit.purge(self._clock() - self._retention)
        if removed:
            logger.info("purged %d audit records past retention", removed)

    async def stop(self) -> None:
        await self._periodic.stop()
