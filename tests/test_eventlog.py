from pathlib import Path

from rooms.eventlog import EventKind, SqliteEventLog, VisitEvent
from rooms.ids import ParticipantId, VisitId


async def test_events_are_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    log = SqliteEventLog(path)
    await log.open()
    await log.append(
        VisitEvent(VisitId("v-1"), EventKind.VISIT_CREATED, org="o", data={"seats": 3})
    )
    await log.append(
        VisitEvent(
            VisitId("v-1"),
            EventKind.PARTICIPANT_JOINED,
            ParticipantId("p-1"),
            "nurse",
            "municipality",
            "o",
        )
    )
    await log.append(VisitEvent(VisitId("v-2"), EventKind.VISIT_CREATED))
    await log.close()

    reopened = SqliteEventLog(path)
    await reopened.open()
    events = await reopened.for_visit(VisitId("v-1"))
    await reopened.close()
    assert [e.kind for e in events] == [EventKind.VISIT_CREATED, EventKind.PARTICIPANT_JOINED]
    assert events[0].data == {"seats": 3}
    assert events[1].participant == "p-1" and events[1].sector == "municipality"
