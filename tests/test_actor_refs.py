"""An EHR's references to the people in a visit are kept only while the visit needs them; on
SQLite and on PostgreSQL."""

from __future__ import annotations

from rooms.actor_refs import SqlActorRefs
from rooms.booking_archive import SqlVisitArchive
from rooms.ids import new_visit_id
from rooms.roles import Role
from rooms.sql import Database
from rooms.visit import Visit, VisitKind, VisitState
from tests import sqlbackends

backend = sqlbackends.backend
database = sqlbackends.database


def new_visit() -> Visit:
    visit = Visit(new_visit_id(), VisitKind.ASSISTED, "rh-aalborg", created_at=1_700_000_000.0)
    visit.add_seat(Role.CITIZEN, name="Karen Jensen")
    visit.add_seat(Role.NURSE)
    return visit


async def test_references_are_found_by_visit_and_by_person(database: Database) -> None:
    refs, archive = SqlActorRefs(database), SqlVisitArchive(database)
    visit = new_visit()
    await archive.insert(visit)
    citizen, nurse = visit.seats
    await refs.put(visit.id, visit.org, {citizen: "Patient/pt-1", nurse: "Practitioner/n-2"})
    assert await refs.for_visit(visit.id) == {citizen: "Patient/pt-1", nurse: "Practitioner/n-2"}
    assert await refs.visits_of("rh-aalborg", "Patient/pt-1") == {visit.id}
    assert await refs.visits_of("rh-odense", "Patient/pt-1") == set()
    assert await refs.for_visits([visit.id, new_visit_id()]) == {
        visit.id: {citizen: "Patient/pt-1", nurse: "Practitioner/n-2"}
    }


async def test_the_references_of_finished_or_forgotten_visits_are_purged(
    database: Database,
) -> None:
    refs, archive = SqlActorRefs(database), SqlVisitArchive(database)
    live, ended, cancelled, gone = new_visit(), new_visit(), new_visit(), new_visit()
    for visit in (live, ended, cancelled, gone):
        await archive.insert(visit)
        await refs.put(visit.id, visit.org, {next(iter(visit.seats)): "Patient/pt-1"})
    for visit, state in ((ended, VisitState.ENDED), (cancelled, VisitState.CANCELLED)):
        visit.transition(state)
        visit.revision += 1
        await archive.put(visit)
    await archive.delete(gone.id)
    assert await refs.purge_finished() == 3
    assert await refs.visits_of("rh-aalborg", "Patient/pt-1") == {live.id}
    assert await refs.purge_finished() == 0
