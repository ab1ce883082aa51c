"""Repeated refusals before authentication: one audit row per address, reason and minute, with a
count; every stored field bounded. On SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import dataclasses

from rooms.audit import REFUSED, AuditRecord, SqlAuditLog
from rooms.sql import Database
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
        text = [v for v in dataclasses.asdict(row).values() if isinstance(v, str)]
        assert sum(len(v.encode()) for v in text) <= 640, row
