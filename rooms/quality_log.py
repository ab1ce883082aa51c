"""Evaluation data beside the event log: connection-quality samples, outcomes and surveys.

Tables of migration 4 (`rooms/sql.py`):

- `quality`: one row per connection-quality sample of one participant (see `QualityRecord`).
  Samples are many and each is worth little on its own, so they are written in batches by a
  `QualityBatcher` (lifecycle events are not: they go to the event log one by one, committed).
  A crash loses at most the samples of one flush interval.
- `outcomes`: the clinical outcome of a visit, one code per visit; recording again replaces it
  (the clinician may correct it).
- `outcome_notes`: the clinician's optional free-text note to the outcome. It is kept for the
  clinician only (`OutcomeStore.note`) and is never part of any evaluation or export.
- `surveys`: the answers (1..5, or none) to the three experience questions; they are also
  recorded as `survey-answered` events, the table makes aggregation easy.

Every row holds pseudonymous ids and codes only: no names, no CPR numbers, no free text (except
the clinician's note, in its own table).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from rooms.sql import Database, Row

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL_SECONDS: Final = 5.0
DEFAULT_MAX_BUFFERED: Final = 10_000
#: Rows per multi-row INSERT: 500 x 13 parameters stays under SQLite's (32 766 since 3.32) and
#: PostgreSQL's (65 535) limits on bound parameters.
ROWS_PER_INSERT: Final = 500
#: Visit ids per `IN (...)` query, for the same reason.
IDS_PER_QUERY: Final = 500

QUALITY_COLUMNS: Final = (
    "time, visit, participant, role, sector, level, rtt_ms, loss_up, loss_down, jitter_ms,"
    " bitrate_up_kbps, bitrate_down_kbps, fps_up"
)
_QUALITY_ROW: Final = "(" + ", ".join("?" * 13) + ")"

_METRICS: Final = (
    "rtt_ms",
    "loss_up",
    "loss_down",
    "jitter_ms",
    "bitrate_up_kbps",
    "bitrate_down_kbps",
    "fps_up",
)


@dataclass(frozen=True)
class QualityRecord:
    """One connection-quality sample of one participant, as stored.

    `level` is good, fair or poor (the rule is in media/quality.py); every measured value may
    be None when it could not be measured in that interval.
    """

    time: float
    visit: str
    participant: str
    role: str | None
    sector: str | None
    level: str
    rtt_ms: float | None = None
    loss_up: float | None = None
    loss_down: float | None = None
    jitter_ms: float | None = None
    bitrate_up_kbps: float | None = None
    bitrate_down_kbps: float | None = None
    fps_up: float | None = None

    @classmethod
    def from_sample(
        cls,
        visit: str,
        participant: str,
        role: str | None,
        sector: str | None,
        sample: Mapping[str, Any],
    ) -> QualityRecord:
        """From a sample as a dict (media.quality.QualitySample.to_dict()); extra keys ignored."""
        return cls(
            time=float(sample["time"]),
            visit=visit,
            participant=participant,
            role=role,
            sector=sector,
            level=str(sample["level"]),
            **{name: _number(sample.get(name)) for name in _METRICS},
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class SurveyRecord:
    """One participant's answers to the three experience questions (each 1..5 or None)."""

    time: float
    visit: str
    participant: str
    q1: int | None
    q2: int | None
    q3: int | None

    @property
    def answers(self) -> tuple[int | None, int | None, int | None]:
        return (self.q1, self.q2, self.q3)


class QualityLog(Protocol):
    async def record_many(self, records: Sequence[QualityRecord]) -> None:
        """Store `records`; they are durable when this returns."""
        ...

    async def for_visits(self, visits: Sequence[str]) -> list[QualityRecord]:
        """Every sample of the given visits, by visit, then time."""
        ...

    async def purge(self, older_than: float) -> int:
        """Delete the samples with `time < older_than`; return how many."""
        ...


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _in_list(count: int) -> str:
    return "(" + ", ".join("?" * count) + ")"


class SqlQualityLog:
    """The `quality` table of a `Database` (migration 4); whoever opened the database closes it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_many(self, records: Sequence[QualityRecord]) -> None:
        for chunk in _chunks(records, ROWS_PER_INSERT):
            params: list[object] = []
            for r in chunk:
                params += (r.time, r.visit, r.participant, r.role, r.sector, r.level)
                params += (r.rtt_ms, r.loss_up, r.loss_down, r.jitter_ms)
                params += (r.bitrate_up_kbps, r.bitrate_down_kbps, r.fps_up)
            values = ", ".join([_QUALITY_ROW] * len(chunk))
            await self._db.execute(
                f"INSERT INTO quality ({QUALITY_COLUMNS}) VALUES {values}", *params
            )

    async def for_visits(self, visits: Sequence[str]) -> list[QualityRecord]:
        records: list[QualityRecord] = []
        for chunk in _chunks(sorted(set(visits)), IDS_PER_QUERY):
            rows = await self._db.fetch(
                f"SELECT {QUALITY_COLUMNS} FROM quality WHERE visit IN {_in_list(len(chunk))}"
                " ORDER BY visit, time, id",
                *chunk,
            )
            records += (_quality_from_row(row) for row in rows)
        return records

    async def latest_and_lacking(
        self, visits: Sequence[str], poor_level: str
    ) -> list[tuple[str, str, float, int]]:
        """Per visit and participant with samples: the latest sample's time, and how many
        samples lack media (bitrate up exactly 0, or level `poor_level`). Aggregated in the
        database: the report reads one row per participant, not each sample."""
        found: list[tuple[str, str, float, int]] = []
        for chunk in _chunks(sorted(set(visits)), IDS_PER_QUERY):
            rows = await self._db.fetch(
                "SELECT visit, participant, MAX(time),"
                " SUM(CASE WHEN bitrate_up_kbps = 0 OR level = ? THEN 1 ELSE 0 END)"
                f" FROM quality WHERE visit IN {_in_list(len(chunk))} GROUP BY visit, participant",
                poor_level,
                *chunk,
            )
            found += ((row[0], row[1], float(row[2]), int(row[3])) for row in rows)
        return found

    async def purge(self, older_than: float) -> int:
        rows = await self._db.fetch("DELETE FROM quality WHERE time < ? RETURNING id", older_than)
        return len(rows)


def _quality_from_row(row: Row) -> QualityRecord:
    return QualityRecord(
        time=row[0],
        visit=row[1],
        participant=row[2],
        role=row[3],
        sector=row[4],
        level=row[5],
        rtt_ms=row[6],
        loss_up=row[7],
        loss_down=row[8],
        jitter_ms=row[9],
        bitrate_up_kbps=row[10],
        bitrate_down_kbps=row[11],
        fps_up=row[12],
    )


class QualityBatcher:
    """Buffers samples in memory and writes them to a `QualityLog` in batches.

    `add` is synchronous and cheap (the hub calls it from its sampling loop). The buffer is
    bounded (`max_buffered`): when it is full the oldest sample is dropped and counted in
    `dropped`. One background task, started by `start`, flushes every `interval` seconds;
    `stop` flushes what is left and ends the task. A failed write is logged and its samples
    go back to the front of the buffer (still bounded) for the next flush.
    """

    def __init__(
        self,
        log: QualityLog,
        interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        if interval <= 0 or max_buffered < 1:
            raise ValueError("interval and max_buffered must be positive")
        self._log = log
        self._interval = interval
        self._max = max_buffered
        self._buffer: deque[QualityRecord] = deque()
        self._dropped = 0
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def dropped(self) -> int:
        """Samples dropped (oldest first) because the buffer was full."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Samples buffered and not yet written."""
        return len(self._buffer)

    def add(self, record: QualityRecord) -> None:
        if len(self._buffer) >= self._max:
            self._buffer.popleft()
            self._dropped += 1
        self._buffer.append(record)

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("quality batcher already started")
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="quality-batcher")

    async def flush(self) -> int:
        """Write everything buffered now; return how many samples were written."""
        async with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
            if not batch:
                return 0
            try:
                await self._log.record_many(batch)
            except BaseException:
                self._requeue(batch)
                raise
            return len(batch)

    def _requeue(self, batch: list[QualityRecord]) -> None:
        """Put an unwritten batch back before anything added since, dropping the oldest."""
        merged = batch + list(self._buffer)
        overflow = max(0, len(merged) - self._max)
        self._dropped += overflow
        self._buffer = deque(merged[overflow:])

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            # The database is down (or slow): the samples wait in the bounded buffer.
            logger.warning(
                "writing %d quality samples failed (%s); will retry",
                self.pending,
                type(exc).__name__,
            )

    async def _run(self) -> None:
        # Never cancelled mid-write: `stop` sets an event, and the loop does the final flush.
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            except TimeoutError:
                pass
            # Read before the flush: samples added while a flush runs get one more.
            stopping = self._stopping.is_set()
            await self._flush_logged()
            if stopping:
                return

    async def stop(self) -> None:
        """Flush what is buffered and end the background task (also when it was never started)."""
        task, self._task = self._task, None
        if task is None:
            await self._flush_logged()
            return
        self._stopping.set()
        await task


class OutcomeStore:
    """The `outcomes` and `outcome_notes` tables (migration 4).

    `record` replaces the visit's outcome and note as a whole: a correction without a note
    removes the earlier note.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, visit: str, outcome: str, note: str | None, time: float) -> None:
        await self._db.execute(
            "INSERT INTO outcomes (visit, outcome, time) VALUES (?, ?, ?)"
            " ON CONFLICT (visit) DO UPDATE SET outcome = excluded.outcome, time = excluded.time",
            visit,
            outcome,
            time,
        )
        if note is not None and note.strip():
            await self._db.execute(
                "INSERT INTO outcome_notes (visit, note, time) VALUES (?, ?, ?)"
                " ON CONFLICT (visit) DO UPDATE SET note = excluded.note, time = excluded.time",
                visit,
                note,
                time,
            )
        else:
            await self._db.execute("DELETE FROM outcome_notes WHERE visit = ?", visit)

    async def for_visits(self, visits: Sequence[str]) -> dict[str, tuple[str, float]]:
        """visit -> (outcome code, time recorded), for the visits that have one."""
        found: dict[str, tuple[str, float]] = {}
        for chunk in _chunks(sorted(set(visits)), IDS_PER_QUERY):
            rows = await self._db.fetch(
                f"SELECT visit, outcome, time FROM outcomes WHERE visit IN {_in_list(len(chunk))}",
                *chunk,
            )
            found.update({row[0]: (row[1], row[2]) for row in rows})
        return found

    async def note(self, visit: str) -> str | None:
        """The clinician's note, for the clinician only; never export it."""
        rows = await self._db.fetch("SELECT note FROM outcome_notes WHERE visit = ?", visit)
        return rows[0][0] if rows else None


class SurveyStore:
    """The `surveys` table (migration 4); a participant may answer more than once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        visit: str,
        participant: str,
        answers: tuple[int | None, int | None, int | None],
        time: float,
    ) -> None:
        if len(answers) != 3:
            raise ValueError("a survey has exactly three answers")
        for answer in answers:
            if answer is not None and (type(answer) is not int or not 1 <= answer <= 5):
                raise ValueError(f"each answer is 1 to 5, or None: {answer!r}")
        await self._db.execute(
            "INSERT INTO surveys (time, visit, participant, q1, q2, q3) VALUES (?, ?, ?, ?, ?, ?)",
            time,
            visit,
            participant,
            *answers,
        )

    async def for_visits(self, visits: Sequence[str]) -> list[SurveyRecord]:
        """Every answer of the given visits, by visit, then time."""
        records: list[SurveyRecord] = []
        for chunk in _chunks(sorted(set(visits)), IDS_PER_QUERY):
            rows = await self._db.fetch(
                "SELECT time, visit, participant, q1, q2, q3 FROM surveys"
                f" WHERE visit IN {_in_list(len(chunk))} ORDER BY visit, time, id",
                *chunk,
            )
            records += (SurveyRecord(*row) for row in rows)
        return records
