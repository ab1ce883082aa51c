import asyncio
import signal
import sys
from pathlib import Path

from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.sql import Database, open_database
from tests.sqlbackends import Backend, backend, database  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


async def test_events_are_durable_across_reopen(backend: Backend) -> None:  # noqa: F811
    db = await backend.open()
    log = SqlEventLog(db)
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
    await db.close()

    reopened = await backend.open()
    try:
        events = await SqlEventLog(reopened).for_visit(VisitId("v-1"))
    finally:
        await reopened.close()
    assert [e.kind for e in events] == [EventKind.VISIT_CREATED, EventKind.PARTICIPANT_JOINED]
    assert events[0].data == {"seats": 3}
    assert events[0].participant is None and events[0].org == "o"
    assert events[1].participant == "p-1" and events[1].sector == "municipality"
    assert events[1].role == "nurse"


async def test_events_come_back_in_append_order_per_visit(database: Database) -> None:  # noqa: F811
    log = SqlEventLog(database)
    kinds = [EventKind.VISIT_OPENED, EventKind.VISIT_STARTED, EventKind.VISIT_ENDED]
    # Same timestamp for all: order must come from the append order, not the clock.
    for n, kind in enumerate(kinds):
        await log.append(VisitEvent(VisitId("v-a"), kind, data={"n": n, "x": [1]}, time=5.0))
        await log.append(VisitEvent(VisitId("v-b"), EventKind.MEDIA_FAILED, time=5.0))
    events = await log.for_visit(VisitId("v-a"))
    assert [e.kind for e in events] == kinds
    assert [e.data for e in events] == [{"n": n, "x": [1]} for n in range(3)]
    assert all(e.time == 5.0 and e.visit == "v-a" for e in events)
    assert await log.for_visit(VisitId("v-none")) == []


# The child appends one event, says so, then idles until it is killed.
CHILD = """
import asyncio, sys
from pathlib import Path
from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.ids import VisitId
from rooms.sql import open_database

async def main() -> None:
    db = await open_database(None, Path(sys.argv[1]))
    event = VisitEvent(VisitId("v-kill"), EventKind.VISIT_STARTED, data={"n": 1})
    await SqlEventLog(db).append(event)
    print("done", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_sqlite_append_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(60):
            line = await child.stdout.readline()
        assert line == b"done\n"
        child.send_signal(signal.SIGKILL)
        await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == -signal.SIGKILL

    db = await open_database(None, path)
    try:
        events = await SqlEventLog(db).for_visit(VisitId("v-kill"))
    finally:
        await db.close()
    assert [(e.kind, e.data) for e in events] == [(EventKind.VISIT_STARTED, {"n": 1})]
