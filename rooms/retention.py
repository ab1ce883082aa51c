"""Automatic deletion of evaluation data past its retention period.

Events, quality samples, outcomes (with their notes) and survey answers older than the
retention are deleted at start-up and then hourly. The audit log has its own retention
(rooms/audit.py); the two periods are separate settings because Danish practice keeps the
access log for six months while pseudonymous evaluation data may serve a study for years.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from rooms.sql import Database

logger = logging.getLogger(__name__)

#: (table, time column) of every table of evaluation data.
EVALUATION_TABLES = (
    ("events", "time"),
    ("quality", "time"),
    ("outcomes", "time"),
    ("outcome_notes", "time"),
    ("surveys", "time"),
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
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                deleted = await purge_evaluation_data(self._db, self._clock() - self._retention)
                if deleted:
                    logger.info("deleted %d evaluation records past retention", deleted)
            except Exception:
                logger.exception("deleting evaluation data past retention failed; retrying")
            await asyncio.sleep(self._interval)
