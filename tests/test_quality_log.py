"""Quality samples, outcomes and surveys on both SQL backends, and the batcher's timing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from rooms.quality_log import (
    OutcomeStore,
    QualityBatcher,
    QualityRecord,
    SqlQualityLog,
    SurveyRecord,
    SurveyStore,
)
from rooms.sql import Database
from tests.sqlbackends import Backend, backend, database  # noqa: F401


def sample(
    t: float, visit: str = "v-1", participant: str = "p-1", **values: float | None
) -> QualityRecord:
    return QualityRecord(
        time=t,
        visit=visit,
        participant=participant,
        role="citizen",
        sector="citizen",
        level="good",
        **values,
    )


async def test_quality_samples_round_trip(database: Database) -> None:  # noqa: F811
    log = SqlQualityLog(database)
    full = QualityRecord(
        time=10.5,
        visit="v-1",
        participant="p-1",
        role="nurse",
        sector="municipality",
        level="fair",
        rtt_ms=123.4,
        loss_up=0.025,
        loss_down=0.0,
        jitter_ms=7.5,
        bitrate_up_kbps=812.0,
        bitrate_down_kbps=1500.5,
        fps_up=29.9,
    )
    empty = QualityRecord(11.0, "v-1", "p-2", None, None, "poor")
    other = sample(9.0, visit="v-2")
    await log.record_many([empty, full, other])
    await log.record_many([])
    assert await log.for_visits(["v-1"]) == [full, empty]
    assert await log.for_visits(["v-2", "v-1", "v-2"]) == [full, empty, other]
    assert await log.for_visits([]) == []
    assert await log.for_visits(["v-none"]) == []


async def test_many_samples_are_written_in_chunks(database: Database) -> None:  # noqa: F811
    log = SqlQualityLog(database)
    records = [sample(float(n), participant=f"p-{n % 3}", rtt_ms=float(n)) for n in range(1203)]
    await log.record_many(records)
    back = await log.for_visits(["v-1"])
    assert back == records


async def test_purge_deletes_old_samples_only(database: Database) -> None:  # noqa: F811
    log = SqlQualityLog(database)
    await log.record_many([sample(1.0), sample(2.0), sample(3.0, visit="v-2"), sample(10.0)])
    assert await log.purge(5.0) == 3
    assert [r.time for r in await log.for_visits(["v-1", "v-2"])] == [10.0]
    assert await log.purge(5.0) == 0


def test_record_from_a_sample_dict() -> None:
    record = QualityRecord.from_sample(
        "v-1",
        "p-1",
        "gp",
        "general-practice",
        {"time": 5, "level": "good", "rtt_ms": 12, "fps_up": None, "loss_up": "x", "extra": 1},
    )
    assert record == QualityRecord(5.0, "v-1", "p-1", "gp", "general-practice", "good", 12.0)


async def test_outcome_upsert_and_note_kept_apart(database: Database) -> None:  # noqa: F811
    store = OutcomeStore(database)
    await store.record("v-1", "handled-remotely", "ondt i brystet", 100.0)
    await store.record("v-2", "other", None, 101.0)
    assert await store.for_visits(["v-1", "v-2", "v-3"]) == {
        "v-1": ("handled-remotely", 100.0),
        "v-2": ("other", 101.0),
    }
    assert await store.note("v-1") == "ondt i brystet"
    assert await store.note("v-2") is None
    # The outcome table itself never holds the note.
    rows = await database.fetch("SELECT * FROM outcomes")
    assert all("ondt" not in str(value) for row in rows for value in row)

    # A correction replaces code, time and note.
    await store.record("v-1", "physical-visit-needed", "ring i morgen", 200.0)
    assert await store.for_visits(["v-1"]) == {"v-1": ("physical-visit-needed", 200.0)}
    assert await store.note("v-1") == "ring i morgen"
    await store.record("v-1", "admission-avoided", None, 300.0)
    assert await store.for_visits(["v-1"]) == {"v-1": ("admission-avoided", 300.0)}
    assert await store.note("v-1") is None
    assert await store.for_visits([]) == {}


async def test_surveys_round_trip_and_validate(database: Database) -> None:  # noqa: F811
    store = SurveyStore(database)
    await store.record("v-1", "p-1", (5, None, 3), 20.0)
    await store.record("v-1", "p-2", (1, 2, 4), 10.0)
    await store.record("v-2", "p-3", (None, None, None), 5.0)
    assert await store.for_visits(["v-1"]) == [
        SurveyRecord(10.0, "v-1", "p-2", 1, 2, 4),
        SurveyRecord(20.0, "v-1", "p-1", 5, None, 3),
    ]
    back = await store.for_visits(["v-2"])
    assert back[0].answers == (None, None, None)
    for bad in ((0, 1, 1), (1, 6, 1), (1, 1, True)):
        with pytest.raises(ValueError, match="1 to 5"):
            await store.record("v-1", "p-1", bad, 30.0)
    # The table refuses an out-of-range answer even past the store.
    with pytest.raises(Exception, match=r"(?i)check"):
        await database.execute(
            "INSERT INTO surveys (time, visit, participant, q1) VALUES (?, ?, ?, ?)",
            1.0,
            "v-9",
            "p-9",
            9,
        )


class MemoryLog:
    """A QualityLog in memory that records each batch, and can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[QualityRecord]] = []
        self.fail = False

    async def record_many(self, records: Sequence[QualityRecord]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.batches.append(list(records))

    async def for_visits(self, visits: Sequence[str]) -> list[QualityRecord]:
        return [r for batch in self.batches for r in batch if r.visit in visits]

    async def purge(self, older_than: float) -> int:
        return 0


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)


async def wait_for_batches(log: MemoryLog, count: int) -> None:
    async def enough() -> bool:
        return len(log.batches) >= count

    await eventually(enough)


async def test_batcher_flushes_on_interval() -> None:
    log = MemoryLog()
    batcher = QualityBatcher(log, interval=0.05)
    batcher.start()
    try:
        batcher.add(sample(1.0))
        batcher.add(sample(2.0))
        await wait_for_batches(log, 1)
        assert [r.time for r in log.batches[0]] == [1.0, 2.0]
        batcher.add(sample(3.0))
        await wait_for_batches(log, 2)
        assert [r.time for r in log.batches[1]] == [3.0]
        assert batcher.pending == 0
    finally:
        await batcher.stop()
    assert len(log.batches) == 2  # nothing left, so the final flush wrote nothing


async def test_batcher_flushes_on_stop() -> None:
    log = MemoryLog()
    batcher = QualityBatcher(log, interval=3600)
    batcher.start()
    batcher.add(sample(1.0))
    await asyncio.sleep(0.05)
    assert log.batches == []
    await batcher.stop()
    assert [[r.time for r in batch] for batch in log.batches] == [[1.0]]


async def test_batcher_stop_without_start_still_flushes() -> None:
    log = MemoryLog()
    batcher = QualityBatcher(log)
    batcher.add(sample(1.0))
    await batcher.stop()
    assert len(log.batches) == 1


async def test_batcher_drops_oldest_when_full() -> None:
    log = MemoryLog()
    batcher = QualityBatcher(log, interval=3600, max_buffered=3)
    for n in range(5):
        batcher.add(sample(float(n)))
    assert batcher.dropped == 2 and batcher.pending == 3
    await batcher.stop()
    assert [r.time for r in log.batches[0]] == [2.0, 3.0, 4.0]


async def test_failed_write_keeps_samples_for_the_next_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryLog()
    batcher = QualityBatcher(log, interval=0.05, max_buffered=4)
    log.fail = True
    batcher.start()
    try:
        batcher.add(sample(1.0))
        batcher.add(sample(2.0))

        async def logged() -> bool:
            return "quality samples failed" in caplog.text

        await eventually(logged)
        assert batcher.pending == 2
        for n in range(3, 6):
            batcher.add(sample(float(n)))
        log.fail = False
        await wait_for_batches(log, 1)
    finally:
        await batcher.stop()
    written = [r.time for batch in log.batches for r in batch]
    assert written == [2.0, 3.0, 4.0, 5.0]
    assert batcher.dropped == 1


async def test_batcher_writes_to_sql(database: Database) -> None:  # noqa: F811
    log = SqlQualityLog(database)
    batcher = QualityBatcher(log, interval=0.05)
    batcher.start()
    try:
        for n in range(20):
            batcher.add(sample(float(n), rtt_ms=float(n)))

        async def all_written() -> bool:
            return len(await log.for_visits(["v-1"])) >= 20

        await eventually(all_written)
        batcher.add(sample(99.0))
    finally:
        await batcher.stop()
    assert [r.time for r in await log.for_visits(["v-1"])] == [*(float(n) for n in range(20)), 99.0]
