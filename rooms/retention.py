"""Automatic deletion of evaluation data past its retention period.

Events, quality samples, outcomes (with their notes), survey answers and bookings older than
the retention are deleted at start-up and then hourly. The audit log has its own retention
(rooms/audit.py); the two periods are separate settings because Danish practice keeps the
access log for six months while pseudonymous evaluation data may serve a study for years.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rooms.periodic import Periodic
from rooms.sql import Database

logger = logging.getLogger(__name__)

#: (table, time column) of every table of evaluation data, and of the bookings (a booking
#: unchanged for as long is long over).
EVALUATION_TABLES = (
    ("events", "time"),
    ("quality", "time"),
    ("outcomes", "time"),
    ("outcome_notes", "time"),
    ("surveys", "time"),
    ("bookings", "updated_at"),
)


async def purge_evaluation_data(db: Database, older_than: float) -> int:
    """Delete every evaluation record with a time before `older_than`; return how many."""
    deleted = 0
    for table, column in EVALUATION_TABLES:
        rows = await db.fetch(f"SELECT COUNT(*) FROM {table} WHERE {column} < ?", older_than)
        count = int(rows[0][0])
        if count:
            await db.execute(f"DELETE FROM {table} WHERE {column} < ?", older_than)
            deleted += count
    return deleted


class EvaluationRetention:
    def __init__(
        self,
        db: Database,
        retention_seconds: float,
        interval: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_seconds <= 0 or interval <= 0:
            raise ValueError("retention and interval must be positive")
        self._db = db
        self._retention = retention_seconds
        self._clock = clock
        self._periodic = Periodic("evaluation-retention", interval, self._purge)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _purge(self) -> None:
        deleted = await purge_evaluation_data(self._db, self._clock() - self._retention)
        if deleted:
            logger.info("deleted %d evaluation records past retention", deleted)
