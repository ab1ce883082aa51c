"""Repeated refusals cost a write per row, not per refusal.

`AuditLog.count` folds the repeats of one address, action, reason and minute into one row. Done
naively that is still one database write (and, on SQLite, one fsync) per refusal: a flood of
hostile requests would keep the database busy and make every honest decision wait behind it.
`CoalescingAuditLog` writes the first refusal of a row at once (durable, as every decision is),
keeps its repeats in memory and adds them to the row every `interval` seconds, before any read,
and at `stop`. A crash loses at most `interval` seconds of repeats' counts, never a row.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rooms.audit import REPEAT_WINDOW_SECONDS, AuditRecord, SqlAuditLog, bounded, repeat_key
from rooms.durable import DATABASE_DOWN
from rooms.periodic import Periodic

DEFAULT_INTERVAL_SECONDS = 2.0
#: Rows whose repeats are held in memory at once; past that, repeats are written one by one.
MAX_HELD_ROWS = 10_000


class CoalescingAuditLog:
    """An `AuditLog` over `SqlAuditLog` whose counted rows are written once per row and
    interval. Call `start` to add held repeats every `interval`, `stop` to add the last."""

    def __init__(
        self,
        audit: SqlAuditLog,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        max_rows: int = MAX_HELD_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._audit = audit
        self._max_rows = max_rows
        self._clock = clock
        #: Rows this process has written, by repeat key, with the window each belongs to.
        self._written: dict[str, int] = {}
        #: Repeats not yet added to their rows, by repeat key.
        self._held: dict[str, int] = {}
        self._periodic = Periodic("audit repeats", interval, self.flush)

    async def record(self, record: AuditRecord) -> None:
        await self._audit.record(record)

    async def count(self, record: AuditRecord) -> None:
        record = bounded(record)
        key = repeat_key(record)
        if key in self._written and (key in self._held or len(self._held) < self._max_rows):
            self._held[key] = self._held.get(key, 0) + record.count
            return
        try:
            await self._audit.count(record)
        except DATABASE_DOWN:
            # Kept as a row of its own (durable: database or outbox), not folded into others.
            await self._audit.record(record)
            return
        if len(self._written) >= self._max_rows:
            self._forget_old_rows()
        if len(self._written) < self._max_rows:
            self._written[key] = int(record.time // REPEAT_WINDOW_SECONDS)

    async def query(
        self,
        *,
        visit: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        await self.flush()
        return await self._audit.query(
            visit=visit, subject=subject, since=since, until=until, limit=limit
        )

    async def purge(self, older_than: float) -> int:
        await self.flush()
        return await self._audit.purge(older_than)

    async def flush(self) -> None:
        """Add the held repeats to their rows; what a failure leaves unwritten stays held."""
        held, self._held = self._held, {}
        try:
            while held:
                key, repeats = next(iter(held.items()))
                await self._audit.add_repeats(key, repeats)
                del held[key]
        finally:
            for key, repeats in held.items():
                self._held[key] = self._held.get(key, 0) + repeats
        self._forget_old_rows()

    def _forget_old_rows(self) -> None:
        """Drop the rows of windows that are over (their repeats, if any more come, are later
        than the clock says they should be: written one by one, as they were before)."""
        current = int(self._clock() // REPEAT_WINDOW_SECONDS)
        for key, window in list(self._written.items()):
            if window < current - 1 and key not in self._held:
                del self._written[key]

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        await self.flush()
