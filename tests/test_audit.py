import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from rooms.audit import (
    ALLOWED,
    DEFAULT_RETENTION_SECONDS,
    REFUSED,
    AuditRecord,
    AuditRetention,
    SqlAuditLog,
)
from rooms.sql import Database
from tests.sqlbackends import backend, database  # noqa: F401

DAY = 24 * 3600.0


def rec(time: float, visit: str | None = "v-1", subject: str | None = "p-1") -> AuditRecord:
    return AuditRecord(action="join", result=ALLOWED, visit=visit, subject=subject, time=time)


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)


def retention_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "audit-retention"]


async def test_record_round_trips_every_field(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    full = AuditRecord(
        action="join",
        result=REFUSED,
        reason="token-expired",
        subject="p-1",
        issuer="screenvisit-local",
        sector="municipality",
        org="o-1",
        role="nurse",
        visit="v-1",
        client="203.0.113.7",
        time=1234.5,
    )
    sparse = AuditRecord(action="visit-create", result=ALLOWED, time=1235.0)
    await audit.record(full)
    await audit.record(sparse)
    assert await audit.query() == [full, sparse]


def test_result_must_be_allowed_or_refused() -> None:
    with pytest.raises(ValueError, match="allowed"):
        AuditRecord(action="join", result="maybe")


async def test_query_filters_combine(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    records = [
        rec(100.0, visit="v-1", subject="p-1"),
        rec(200.0, visit="v-2", subject="p-1"),
        rec(300.0, visit="v-1", subject="p-2"),
        rec(400.0, visit=None, subject="p-1"),
    ]
    for record in reversed(records):  # stored out of order: results still come oldest first
        await audit.record(record)
    assert await audit.query() == records
    assert await audit.query(visit="v-1") == [records[0], records[2]]
    assert await audit.query(subject="p-1") == [records[0], records[1], records[3]]
    assert await audit.query(visit="v-1", subject="p-1") == [records[0]]
    assert await audit.query(since=200.0) == records[1:]
    assert await audit.query(until=300.0) == records[:2]
    assert await audit.query(since=150.0, until=350.0, subject="p-2") == [records[2]]
    assert await audit.query(visit="v-none") == []


async def test_limit_keeps_the_newest(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    records = [rec(float(t)) for t in range(10)]
    for record in records:
        await audit.record(record)
    assert await audit.query(limit=3) == records[-3:]
    assert await audit.query(visit="v-1", limit=1) == records[-1:]
    with pytest.raises(ValueError):
        await audit.query(limit=0)


async def test_purge_deletes_strictly_older_and_counts(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    for t in (10.0, 20.0, 30.0, 40.0):
        await audit.record(rec(t))
    assert await audit.purge(30.0) == 2
    assert [r.time for r in await audit.query()] == [30.0, 40.0]
    assert await audit.purge(30.0) == 0


def test_default_retention_is_six_months() -> None:
    assert DEFAULT_RETENTION_SECONDS == 183 * DAY


async def test_retention_purges_on_start_and_every_interval(database: Database) -> None:  # noqa: F811
    audit = SqlAuditLog(database)
    now = 1_000 * DAY
    recent = rec(now - 1 * DAY)
    await audit.record(rec(now - 200 * DAY))
    await audit.record(recent)
    retention = AuditRetention(audit, 183 * DAY, interval=0.05, clock=lambda: now)
    retention.start()
    try:

        async def only_recent_left() -> bool:
            return await audit.query() == [recent]

        await eventually(only_recent_left)
        # A record that expires later goes at a following interval, not only at start.
        await audit.record(rec(now - 190 * DAY))
        await eventually(only_recent_left)
    finally:
        await retention.stop()
    assert retention_tasks() == []


class FailingOnce(SqlAuditLog):
    """A real audit log whose first purge fails, as when the database is briefly away."""

    calls = 0

    async def purge(self, older_than: float) -> int:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("database unreachable")
        return await super().purge(older_than)


async def test_retention_logs_a_failed_purge_and_keeps_going(
    database: Database,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = FailingOnce(database)
    await flaky.record(rec(0.0))
    retention = AuditRetention(flaky, DAY, interval=0.05, clock=lambda: 10 * DAY)
    with caplog.at_level(logging.ERROR, logger="rooms.audit"):
        retention.start()
        try:

            async def purged() -> bool:
                return await flaky.query() == []

            await eventually(purged)
        finally:
            await retention.stop()
    assert flaky.calls >= 2
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert failures and "audit purge failed" in failures[0].getMessage()


async def test_stop_without_start_and_twice_is_harmless(database: Database) -> None:  # noqa: F811
    retention = AuditRetention(SqlAuditLog(database))
    await retention.stop()
    retention.start()
    with pytest.raises(RuntimeError):
        retention.start()
    await retention.stop()
    await retention.stop()
    assert retention_tasks() == []
