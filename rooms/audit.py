"""The audit log: who was allowed or refused what, kept for a bounded time, then purged."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

from rooms.periodic import Periodic
from rooms.sql import Database, Row

logger = logging.getLogger(__name__)

ALLOWED: Final = "allowed"
REFUSED: Final = "refused"

DEFAULT_RETENTION_SECONDS: Final = 183 * 24 * 3600.0  # six months
DEFAULT_PURGE_INTERVAL_SECONDS: Final = 3600.0
#: Repeats of one refusal (same address, action, reason, subject) within one such window share
#: one row with a count.
REPEAT_WINDOW_SECONDS: Final = 60.0

#: The most UTF-8 bytes stored of each text field, whoever wrote the record: a row holds at most
#: a few hundred bytes however much an attacker sends.
FIELD_LIMITS: Final = MappingProxyType(
    {
        "action": 32,
        "result": 8,
        "reason": 96,
        "subject": 128,
        "issuer": 96,
        "sector": 24,
        "org": 64,
        "role": 24,
        "visit": 68,
        "client": 48,
        "token": 24,
    }
)
MAX_ROW_TEXT_BYTES: Final = sum(FIELD_LIMITS.values())


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
    #: A short digest of the refused token (`token_digest`), never the token itself.
    token: str | None = None
    time: float = field(default_factory=time.time)
    #: How many decisions this record stands for (see `AuditLog.count`); `time` is the first.
    count: int = 1
    #: Unique per record, so a record written twice (from the outbox) is stored once.
    uid: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)

    def __post_init__(self) -> None:
        if self.result not in (ALLOWED, REFUSED):
            raise ValueError(f"audit result must be {ALLOWED!r} or {REFUSED!r}: {self.result!r}")


def token_digest(token: str) -> str:
    """What the audit log keeps of a token: enough to tell repeats of one token apart from
    others, nothing that can be replayed."""
    return "sha256:" + hashlib.sha256(token.encode(errors="replace")).hexdigest()[:16]


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text.encode(errors="replace")[:limit].decode(errors="ignore")


def bounded(record: AuditRecord) -> AuditRecord:
    """`record` with every text field cut to its `FIELD_LIMITS`."""
    clipped: dict[str, Any] = {
        name: _clip(getattr(record, name), limit) for name, limit in FIELD_LIMITS.items()
    }
    return dataclasses.replace(record, **clipped)


def repeat_key(record: AuditRecord, window: float = REPEAT_WINDOW_SECONDS) -> str:
    """The row `AuditLog.count` folds `record` into: its address, action, result, reason and
    subject, in its window of time."""
    parts = (
        str(int(record.time // window)),
        record.action,
        record.result,
        record.reason or "",
        record.client or "",
        record.subject or "",
    )
    return hashlib.sha256("\x00".join(parts).encode(errors="replace")).hexdigest()[:32]


class AuditLog(Protocol):
    async def record(self, record: AuditRecord) -> None:
        """Store `record`; it is durable when this returns."""
        ...

    async def count(self, record: AuditRecord) -> None:
        """Store `record`, or add one to the `count` of the row already holding a record of the
        same address, action, result, reason and subject in the same minute; durable when this
        returns. For refusals that an attacker can repeat at will."""
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


COLUMNS: Final = (
    "time, action, result, reason, subject, issuer, sector, org, role, visit, client, token, count"
)


class SqlAuditLog:
    """The `audit` table of a `Database` (migration 2); whoever opened the database closes it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, record: AuditRecord) -> None:
        await self._db.execute(
            f"INSERT INTO audit ({COLUMNS}, uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (uid) DO NOTHING",
            *_values(bounded(record)),
            record.uid,
        )

    async def count(self, record: AuditRecord) -> None:
        record = bounded(record)
        await self._db.execute(
            f"INSERT INTO audit ({COLUMNS}, repeat_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (repeat_key) DO UPDATE SET count = audit.count + excluded.count",
            *_values(record),
            repeat_key(record),
        )

    async def add_repeats(self, key: str, repeats: int) -> None:
        """Add `repeats` to the `count` of the row `count` wrote under `key`."""
        await self._db.execute(
            "UPDATE audit SET count = count + ? WHERE repeat_key = ?", repeats, key
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


def _values(record: AuditRecord) -> tuple[object, ...]:
    return (
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
        record.token,
        record.count,
    )


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
        token=row[11],
        count=row[12],
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
