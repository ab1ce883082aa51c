"""An EHR's references to the people in a visit's seats (`actor_refs`, migration 9).

A FHIR Appointment names each participant by a reference into the EHR ("Patient/123",
"Practitioner/abc"). The visit itself keeps only pseudonymous seats, so the references live here,
one row per seat, for as long as the visit needs them: they are deleted when the visit is
cancelled or over (`purge_finished`, run with the bookings' retention), and a finished visit's
references are never shown again.
"""

from __future__ import annotations

from collections.abc import Mapping

from rooms.ids import ParticipantId, VisitId
from rooms.sql import Database
from rooms.store import FINISHED_STATES


class SqlActorRefs:
    """The `actor_refs` table of a `Database`; whoever opened the database closes it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, visit: VisitId, org: str, refs: Mapping[ParticipantId, str]) -> None:
        for participant, reference in refs.items():
            await self._db.execute(
                "INSERT INTO actor_refs (visit, participant, org, reference) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (visit, participant) DO UPDATE SET reference = excluded.reference",
                visit,
                participant,
                org,
                reference,
            )

    async def for_visit(self, visit: VisitId) -> dict[ParticipantId, str]:
        rows = await self._db.fetch(
            "SELECT participant, reference FROM actor_refs WHERE visit = ?", visit
        )
        return {ParticipantId(row[0]): str(row[1]) for row in rows}

    async def for_visits(self, visits: list[VisitId]) -> dict[VisitId, dict[ParticipantId, str]]:
        """The references of each of `visits` (one query per hundred visits)."""
        out: dict[VisitId, dict[ParticipantId, str]] = {}
        for start in range(0, len(visits), 100):
            chunk = visits[start : start + 100]
            marks = ", ".join("?" for _ in chunk)
            rows = await self._db.fetch(
                f"SELECT visit, participant, reference FROM actor_refs WHERE visit IN ({marks})",
                *chunk,
            )
            for visit, participant, reference in rows:
                out.setdefault(VisitId(visit), {})[ParticipantId(participant)] = str(reference)
        return out

    async def visits_of(self, org: str, reference: str) -> set[VisitId]:
        rows = await self._db.fetch(
            "SELECT visit FROM actor_refs WHERE org = ? AND reference = ?", org, reference
        )
        return {VisitId(row[0]) for row in rows}

    async def forget(self, visit: VisitId) -> None:
        await self._db.execute("DELETE FROM actor_refs WHERE visit = ?", visit)

    async def purge_finished(self) -> int:
        """Delete the references of every visit that is over, cancelled, or no longer recorded;
        return how many."""
        finished = sorted(state.value for state in FINISHED_STATES)
        where = "visit NOT IN (SELECT visit FROM bookings WHERE state NOT IN (?, ?))"
        rows = await self._db.fetch(f"SELECT COUNT(*) FROM actor_refs WHERE {where}", *finished)
        count = int(rows[0][0])
        if count:
            await self._db.execute(f"DELETE FROM actor_refs WHERE {where}", *finished)
        return count
