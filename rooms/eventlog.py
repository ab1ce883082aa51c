"""The durable event log that evaluation is built on.

Lifecycle events are committed (on SQLite, fsync'd in FULL mode) before `append` returns, so an
event whose request was answered survives a crash. Events hold pseudonymous ids only. Each event
carries a unique `uid`: writing it twice (again from the outbox, rooms/outbox.py) stores it once.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from rooms.ids import ParticipantId, VisitId
from rooms.sql import Database


class EventKind(StrEnum):
    VISIT_CREATED = "visit-created"
    VISIT_OPENED = "visit-opened"
    VISIT_STARTED = "visit-started"
    VISIT_ENDED = "visit-ended"
    VISIT_CANCELLED = "visit-cancelled"
    VISIT_FELL_BACK_TO_PHONE = "visit-fell-back-to-phone"
    #: The node hosting the visit was lost (or drained) and another node took it over.
    VISIT_MOVED = "visit-moved"
    PARTICIPANT_INVITED = "participant-invited"
    PARTICIPANT_WAITING = "participant-waiting"
    PARTICIPANT_ADMITTED = "participant-admitted"
    PARTICIPANT_DECLINED = "participant-declined"
    PARTICIPANT_JOINED = "participant-joined"
    PARTICIPANT_LEFT = "participant-left"
    PARTICIPANT_RECONNECTING = "participant-reconnecting"
    PARTICIPANT_RECONNECTED = "participant-reconnected"
    PARTICIPANT_REMOVED = "participant-removed"
    CITIZEN_ASSISTED = "citizen-assisted"
    OUTCOME_RECORDED = "outcome-recorded"
    SURVEY_ANSWERED = "survey-answered"
    MEDIA_FIRST_FRAME = "media-first-frame"
    MEDIA_RESTARTED = "media-restarted"
    MEDIA_FAILED = "media-failed"
    #: A participant began or stopped showing content (data: `source`, "screen" or "camera2";
    #: on stop also `seconds`). That content was shown, never what.
    CONTENT_SHARE_STARTED = "content-share-started"
    CONTENT_SHARE_STOPPED = "content-share-stopped"


#: EventKind by value: a dict lookup, where `EventKind(value)` is a call (rows read by the 100,000).
_KINDS: Final = {kind.value: kind for kind in EventKind}


@dataclass(frozen=True)
class VisitEvent:
    visit: VisitId
    kind: EventKind
    participant: ParticipantId | None = None
    role: str | None = None
    sector: str | None = None
    org: str | None = None
    data: dict[str, object] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)

    def to_json(self) -> dict[str, object]:
        return {
            "visit": self.visit,
            "kind": self.kind.value,
            "participant": self.participant,
            "role": self.role,
            "sector": self.sector,
            "org": self.org,
            "data": self.data,
            "time": self.time,
            "uid": self.uid,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> VisitEvent:
        participant = raw.get("participant")
        return cls(
            visit=VisitId(str(raw["visit"])),
            kind=EventKind(raw["kind"]),
            participant=ParticipantId(participant) if participant else None,
            role=raw.get("role"),
            sector=raw.get("sector"),
            org=raw.get("org"),
            data=dict(raw.get("data") or {}),
            time=float(raw["time"]),
            uid=str(raw["uid"]),
        )


class EventLog(Protocol):
    async def append(self, event: VisitEvent) -> None: ...

    async def for_visit(self, visit: VisitId) -> list[VisitEvent]: ...

    async def visits_created(
        self, since: float | None = None, until: float | None = None, org: str | None = None
    ) -> list[VisitId]: ...

    async def visits_in_period(
        self, org: str, since: float | None = None, until: float | None = None
    ) -> list[VisitId]: ...

    async def for_visits(self, visits: list[VisitId]) -> dict[VisitId, list[VisitEvent]]: ...


class SqlEventLog:
    """The `events` table of a `Database` (migration 1); whoever opened the database closes it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, event: VisitEvent) -> None:
        await self._db.execute(
            "INSERT INTO events (time, visit, kind, participant, role, sector, org, data, uid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid) DO NOTHING",
            event.time,
            event.visit,
            event.kind.value,
            event.participant,
            event.role,
            event.sector,
            event.org,
            json.dumps(event.data, sort_keys=True),
            event.uid,
        )

    async def for_visit(self, visit: VisitId) -> list[VisitEvent]:
        return (await self.for_visits([visit])).get(visit, [])

    async def visits_created(
        self, since: float | None = None, until: float | None = None, org: str | None = None
    ) -> list[VisitId]:
        """Visits created in [since, until), optionally of one organisation, oldest first."""
        sql = "SELECT visit FROM events WHERE kind = ?"
        params: list[object] = [EventKind.VISIT_CREATED.value]
        if since is not None:
            sql += " AND time >= ?"
            params.append(since)
        if until is not None:
            sql += " AND time < ?"
            params.append(until)
        if org is not None:
            sql += " AND org = ?"
            params.append(org)
        rows = await self._db.fetch(sql + " ORDER BY time", *params)
        return [VisitId(row[0]) for row in rows]

    async def visits_in_period(
        self, org: str, since: float | None = None, until: float | None = None
    ) -> list[VisitId]:
        """`org`'s visits whose reference time falls in [since, until), oldest first.

        The reference time is the one `rooms.evaluation` reports by: the first join, else the
        planned start, else the booking. Computed in SQL, so that a report of one week does not
        read the whole history."""
        if self._db.dialect == "postgresql":
            planned = (
                "CASE WHEN jsonb_typeof(c.data::jsonb -> 'planned_start') = 'number'"
                " THEN (c.data::jsonb ->> 'planned_start')::float8 END"
            )
        else:
            planned = (
                "CASE WHEN typeof(json_extract(c.data, '$.planned_start'))"
                " IN ('integer', 'real') THEN json_extract(c.data, '$.planned_start') END"
            )
        reference = (
            "COALESCE((SELECT MIN(j.time) FROM events j WHERE j.visit = c.visit AND j.kind = ?),"
            f" {planned}, c.time)"
        )
        sql = (
            f"SELECT visit FROM (SELECT c.visit AS visit, c.time AS created, {reference} AS ref"
            " FROM events c WHERE c.kind = ? AND c.org = ?) AS v"
        )
        params: list[object] = [
            EventKind.PARTICIPANT_JOINED.value,
            EventKind.VISIT_CREATED.value,
            org,
        ]
        where = []
        if since is not None:
            where.append("ref >= ?")
            params.append(since)
        if until is not None:
            where.append("ref < ?")
            params.append(until)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._db.fetch(sql + " ORDER BY created", *params)
        return [VisitId(row[0]) for row in rows]

    async def for_visits(self, visits: list[VisitId]) -> dict[VisitId, list[VisitEvent]]:
        out: dict[VisitId, list[VisitEvent]] = {v: [] for v in visits}
        for start in range(0, len(visits), 500):
            chunk = visits[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = await self._db.fetch(
                "SELECT time, visit, kind, participant, role, sector, org, data, uid FROM events"
                f" WHERE visit IN ({marks}) ORDER BY id",
                *chunk,
            )
            for row in rows:
                out[VisitId(row[1])].append(
                    VisitEvent(
                        time=row[0],
                        visit=VisitId(row[1]),
                        kind=_KINDS[row[2]],
                        participant=ParticipantId(row[3]) if row[3] else None,
                        role=row[4],
                        sector=row[5],
                        org=row[6],
                        data={} if row[7] == "{}" else json.loads(row[7]),
                        **({"uid": row[8]} if row[8] else {}),
                    )
                )
        return out
