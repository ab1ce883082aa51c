"""Repeated refusals before authentication: one audit row per address, reason and minute, with a
count; every stored field bounded. On SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from rooms.audit import MAX_ROW_TEXT_BYTES, REFUSED, AuditRecord, SqlAuditLog
from rooms.audit_repeats import CoalescingAuditLog
from rooms.sql import Database, Row
from tests.sqlbackends import backend, database  # noqa: F401

MINUTE = 60.0
T0 = 1_800_000_000.0  # on a minute boundary


def refusal(
    time: float, reason: str = "token-malformed", client: str = "203.0.113.7"
) -> AuditRecord:
    return AuditRecord(action="join", result=REFUSED, reason=reason, client=client, time=time)


async def test_repeats_in_one_minute_are_one_row_with_a_count(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    for second in range(5):
        await audit.count(refusal(T0 + second))
    await audit.count(refusal(T0 + 10, reason="rate-limited"))
    await audit.count(refusal(T0 + 11, client="198.51.100.9"))
    await audit.count(refusal(T0 + MINUTE + 1))  # the next minute: a row of its own
    rows = await audit.query()
    assert [(r.reason, r.client, r.count, r.time) for r in rows] == [
        ("token-malformed", "203.0.113.7", 5, T0),
        ("rate-limited", "203.0.113.7", 1, T0 + 10),
        ("token-malformed", "198.51.100.9", 1, T0 + 11),
        ("token-malformed", "203.0.113.7", 1, T0 + MINUTE + 1),
    ]


async def test_single_records_are_never_merged(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    await audit.record(refusal(T0))
    await audit.record(refusal(T0 + 1))
    await audit.count(refusal(T0 + 2))
    assert [r.count for r in await audit.query()] == [1, 1, 1]


async def test_every_stored_field_is_bounded(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    huge = "x" * 65_536
    record = AuditRecord(
        action=huge,
        result=REFUSED,
        reason=huge,
        subject=huge,
        issuer=huge,
        sector=huge,
        org=huge,
        role=huge,
        visit=huge,
        client=huge,
        token=huge,
        time=T0,
    )
    await audit.record(record)
    await audit.count(dataclasses.replace(record, time=T0 + 1))
    stored = await audit.query()
    assert len(stored) == 2
    for row in stored:
        # `uid` is the server's own fixed-size id (for replays from the outbox), not input.
        fields = dataclasses.asdict(row)
        del fields["uid"]
        text = [v for v in fields.values() if isinstance(v, str)]
        assert sum(len(v.encode()) for v in text) <= MAX_ROW_TEXT_BYTES <= 640, row


class CountingDatabase:
    """The real database, with the statements that write counted."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.dialect = db.dialect
        self.writes = 0

    async def execute(self, sql: str, *params: object) -> None:
        self.writes += 1
        await self._db.execute(sql, *params)

    async def fetch(self, sql: str, *params: object) -> list[Row]:
        return await self._db.fetch(sql, *params)

    async def close(self) -> None:
        await self._db.close()


async def test_a_flood_of_repeats_costs_a_write_per_row_not_per_refusal(
    database: Database,  # noqa: F811
) -> None:
    counting = CountingDatabase(database)
    audit = CoalescingAuditLog(SqlAuditLog(counting), interval=3600)
    audit.start()
    try:
        now = time.time()
        await audit.count(refusal(now))
        # The first refusal of its address, reason and minute is durable at once...
        assert [r.count for r in await SqlAuditLog(database).query()] == [1]
        for _ in range(999):
            await audit.count(refusal(now))
        assert counting.writes == 1  # ...its repeats wait in memory
        assert [r.count for r in await audit.query()] == [1000]  # a read sees them all
        assert counting.writes == 2
        await audit.count(refusal(now, reason="rate-limited"))
        await audit.count(refusal(now, reason="rate-limited"))
    finally:
        await audit.stop()
    # Stopping adds what was still in memory.
    rows = await SqlAuditLog(database).query()
    assert [(r.reason, r.count) for r in rows] == [("token-malformed", 1000), ("rate-limited", 2)]


async def test_repeats_are_added_every_interval(database: Database) -> None:  # noqa: F811
    audit = CoalescingAuditLog(SqlAuditLog(database), interval=0.05)
    audit.start()
    try:
        for _ in range(5):
            await audit.count(refusal(time.time()))
        reader = SqlAuditLog(database)
        async with asyncio.timeout(10):
            while True:  # polled with a deadline: the interval is the event
                if sum(r.count for r in await reader.query()) == 5:
                    break
                await asyncio.sleep(0.02)
    finally:
        await audit.stop()
    assert [t for t in asyncio.all_tasks() if t.get_name() == "audit repeats"] == []
