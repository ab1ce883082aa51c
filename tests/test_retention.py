"""Evaluation data is deleted automatically past its retention, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.quality_log import OutcomeStore, QualityRecord, SqlQualityLog, SurveyStore
from rooms.retention import purge_evaluation_data
from rooms.sql import Database
from tests.sqlbackends import backend, database  # noqa: F401


async def test_old_evaluation_data_goes_and_recent_stays(database: Database) -> None:  # noqa: F811
    now = time.time()
    old, recent = now - 400 * 86400, now - 86400
    events = SqlEventLog(database)
    for visit, at in (("v-old", old), ("v-new", recent)):
        await events.append(VisitEvent(VisitId(visit), EventKind.VISIT_CREATED, time=at))
        await SqlQualityLog(database).record_many(
            [QualityRecord(at, visit, "p-1", "gp", "general-practice", "good")]
        )
        await OutcomeStore(database).record(visit, "other", "a note", at)
        await SurveyStore(database).record(visit, ParticipantId("p-1"), (5, 5, 5), at)
    deleted = await purge_evaluation_data(database, now - 365 * 86400)
    assert deleted == 5  # event, sample, outcome, note, survey of the old visit
    assert await events.for_visit(VisitId("v-old")) == []
    assert len(await events.for_visit(VisitId("v-new"))) == 1
    assert list(await OutcomeStore(database).for_visits(["v-old", "v-new"])) == ["v-new"]
    assert await OutcomeStore(database).note("v-old") is None
    assert [s.visit for s in await SurveyStore(database).for_visits(["v-old", "v-new"])] == [
        "v-new"
    ]
