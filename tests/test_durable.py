"""Records through the durable writer are stored once, however often they are written."""

from __future__ import annotations

from pathlib import Path

from rooms.audit import AuditRecord, SqlAuditLog
from rooms.durable import DATABASE, DurableAuditLog, DurableEventLog, DurableWriter
from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.ids import VisitId
from rooms.outbox import FileOutbox
from rooms.sql import Database
from tests.sqlbackends import backend, database  # noqa: F401


async def test_a_record_written_again_from_the_outbox_is_stored_once(
    database: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    outbox = FileOutbox(tmp_path / "outbox")
    await outbox.open()
    writer = DurableWriter(database, outbox)
    events = DurableEventLog(database, writer)
    audit = DurableAuditLog(database, writer)
    event = VisitEvent(VisitId("v-1"), EventKind.VISIT_STARTED, data={"n": 1})
    record = AuditRecord(action="join", result="allowed", visit="v-1")
    assert await writer.write("event", event.to_json()) == DATABASE
    await audit.record(record)
    # As after a write that timed out although it had committed: the same records again, from
    # the outbox, and the outbox replayed twice (a replay cut short starts over).
    for _ in range(2):
        await outbox.append({"kind": "event", "record": event.to_json()})
        await outbox.append({"kind": "audit", "record": {**record.__dict__}})
    assert await writer.replay() == 4
    assert await writer.replay() == 0
    stored = await SqlEventLog(database).for_visit(VisitId("v-1"))
    assert [(e.kind, e.data, e.uid) for e in stored] == [(event.kind, {"n": 1}, event.uid)]
    assert len(await SqlAuditLog(database).query(visit="v-1")) == 1
    assert await events.for_visit(VisitId("v-1")) == stored
    assert writer.reasons() == []
    await outbox.close()
