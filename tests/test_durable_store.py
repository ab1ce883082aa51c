"""Bookings outlive live state: every test runs on SQLite and PostgreSQL, each with the memory
store and with the real Redis as the cache. "The cache is lost" is a new memory store (a node
restarted) or the test's Redis keys deleted (Redis came back empty)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rooms.booking_archive import RecordUnavailable, SqlVisitArchive
from rooms.durable_store import DurableVisitStore
from rooms.errors import InvalidTransition, VisitNotFound
from rooms.ids import VisitId, new_visit_id
from rooms.retention import purge_evaluation_data
from rooms.roles import Role
from rooms.sql import Database, PostgresDatabase
from rooms.store import MemoryVisitStore, StoreUnavailable, VisitStore
from rooms.visit import Visit, VisitKind, VisitState
from tests import sqlbackends, storebackends
from tests.storebackends import StoreBackend, delete_prefixed

backend = sqlbackends.backend
database = sqlbackends.database
store_backend = storebackends.store_backend


def new_visit(org: str = "org", *roles: Role) -> Visit:
    visit = Visit(new_visit_id(), VisitKind.ASSISTED, org, created_at=1_700_000_000.5)
    visit.planned_start = 1_900_000_000.0
    visit.waiting_room = False
    for role in roles or (Role.CITIZEN, Role.NURSE, Role.GP):
        visit.add_seat(role, name=f"{role.value} name")
    return visit


def add_relative(visit: Visit) -> None:
    visit.max_participants = 50
    visit.add_seat(Role.RELATIVE)


async def durable(store_backend: StoreBackend, database: Database) -> DurableVisitStore:
    """A node's store: its cache on the test's live state, its record in the test's database."""
    return DurableVisitStore(await store_backend.open_node(), SqlVisitArchive(database))


async def after_cache_loss(store_backend: StoreBackend, database: Database) -> DurableVisitStore:
    """A node's store once live state is gone: a restarted node, or Redis back empty."""
    cache: VisitStore
    if store_backend.name == "memory":
        cache = MemoryVisitStore()
    else:
        await delete_prefixed(store_backend.prefix)
        cache = await store_backend.open_node()
    return DurableVisitStore(cache, SqlVisitArchive(database))


async def test_a_booking_opens_after_the_cache_is_lost(
    store_backend: StoreBackend, database: Database
) -> None:
    store = await durable(store_backend, database)
    visit = new_visit()
    await store.create(visit)

    restarted = await after_cache_loss(store_backend, database)
    got = await restarted.get(visit.id)

    assert got.to_dict() == visit.to_dict()
    # Rebuilt in the cache too: the next read needs no record.
    assert (await restarted.cache.get(visit.id)).to_dict() == visit.to_dict()
    with pytest.raises(VisitNotFound):
        await restarted.get(VisitId("v-never-booked"))


async def test_every_change_is_recorded_before_it_returns(
    store_backend: StoreBackend, database: Database
) -> None:
    store = await durable(store_backend, database)
    moved, cancelled, grown = new_visit(), new_visit(), new_visit()
    for visit in (moved, cancelled, grown):
        await store.create(visit)

    def move(v: Visit) -> None:
        v.planned_start = 1_900_086_400.0
        v.planned_minutes = 45

    await store.update(moved.id, move)
    await store.update(cancelled.id, Visit.cancel)
    await store.update(grown.id, add_relative)

    restarted = await after_cache_loss(store_backend, database)
    got = await restarted.get(moved.id)
    assert (got.planned_start, got.planned_minutes, got.revision) == (1_900_086_400.0, 45, 1)
    assert (await restarted.get(cancelled.id)).state is VisitState.CANCELLED
    assert len((await restarted.get(grown.id)).seats) == 4


async def test_an_update_after_the_cache_is_lost_applies_to_the_recorded_visit(
    store_backend: StoreBackend, database: Database
) -> None:
    store = await durable(store_backend, database)
    visit = new_visit()
    await store.create(visit)
    await store.update(visit.id, lambda v: v.transition(VisitState.OPEN))

    restarted = await after_cache_loss(store_backend, database)
    updated = await restarted.update(visit.id, lambda v: v.transition(VisitState.IN_PROGRESS))

    assert (updated.state, updated.revision) == (VisitState.IN_PROGRESS, 2)
    again = await after_cache_loss(store_backend, database)
    assert (await again.get(visit.id)).state is VisitState.IN_PROGRESS
    with pytest.raises(VisitNotFound):
        await again.update(VisitId("v-never-booked"), lambda v: None)


async def test_a_failed_change_is_neither_cached_nor_recorded(
    store_backend: StoreBackend, database: Database
) -> None:
    store = await durable(store_backend, database)
    visit = new_visit()
    await store.create(visit)
    with pytest.raises(InvalidTransition):
        await store.update(visit.id, lambda v: v.transition(VisitState.IN_PROGRESS))
    assert (await store.get(visit.id)).to_dict() == visit.to_dict()
    restarted = await after_cache_loss(store_backend, database)
    assert (await restarted.get(visit.id)).to_dict() == visit.to_dict()


async def test_a_booking_is_recorded_once(store_backend: StoreBackend, database: Database) -> None:
    store = await durable(store_backend, database)
    visit = new_visit()
    await store.create(visit)
    duplicate = Visit(visit.id, VisitKind.CONFERENCE, "other-org", created_at=5.0)
    with pytest.raises(ValueError, match="recorded"):
        await store.create(duplicate)
    restarted = await after_cache_loss(store_backend, database)
    assert (await restarted.get(visit.id)).to_dict() == visit.to_dict()
    assert await restarted.list_by_org("other-org") == []


async def test_the_organisation_lists_its_bookings_after_the_cache_is_lost(
    store_backend: StoreBackend, database: Database
) -> None:
    store = await durable(store_backend, database)
    mine = [new_visit("org-a") for _ in range(3)]
    for visit in [*mine, new_visit("org-b")]:
        await store.create(visit)
    await store.update(mine[0].id, Visit.cancel)

    restarted = await after_cache_loss(store_backend, database)
    listed = {v.id: v for v in await restarted.list_by_org("org-a")}

    assert sorted(listed) == sorted(v.id for v in mine)
    assert listed[mine[0].id].state is VisitState.CANCELLED
    # A change made after the rebuild is what the list shows.
    await restarted.update(mine[1].id, lambda v: v.transition(VisitState.OPEN))
    listed = {v.id: v for v in await restarted.list_by_org("org-a")}
    assert listed[mine[1].id].state is VisitState.OPEN


async def test_two_nodes_rebuild_one_visit_and_all_their_changes_land(
    store_backend: StoreBackend, database: Database
) -> None:
    first = await durable(store_backend, database)
    visit = new_visit("org", Role.CITIZEN)
    await first.create(visit)
    await after_cache_loss(store_backend, database)
    # Two nodes on the same (emptied) live state; for memory, one node's store twice.
    nodes = [await durable(store_backend, database) for _ in range(2)]
    if store_backend.name == "memory":
        nodes = [nodes[0], DurableVisitStore(nodes[0].cache, nodes[0].archive)]

    await asyncio.gather(*(node.update(visit.id, add_relative) for node in nodes * 5))

    restarted = await after_cache_loss(store_backend, database)
    final = await restarted.get(visit.id)
    assert (len(final.seats), final.revision) == (11, 10)


async def test_an_older_copy_never_replaces_a_newer_record(database: Database) -> None:
    archive = SqlVisitArchive(database)
    visit = new_visit()
    await archive.insert(visit)
    newer = Visit.from_dict(visit.to_dict())
    newer.transition(VisitState.OPEN)
    newer.revision = 2
    older = Visit.from_dict(visit.to_dict())
    older.planned_minutes = 60
    older.revision = 1

    await archive.put(newer)
    await archive.put(older)  # a write that lost the race and lands late

    recorded = await archive.get(visit.id)
    assert recorded is not None and recorded.to_dict() == newer.to_dict()


async def test_a_finished_booking_is_recorded_without_names(database: Database) -> None:
    archive = SqlVisitArchive(database)
    live, ended = new_visit(), new_visit()
    for visit in (live, ended):
        await archive.insert(visit)
    ended.transition(VisitState.OPEN)
    ended.transition(VisitState.ENDED)
    ended.revision = 1
    await archive.put(ended)

    recorded_live, recorded_ended = await archive.get(live.id), await archive.get(ended.id)
    assert recorded_live is not None and recorded_ended is not None
    assert {s.name for s in recorded_live.seats.values()} == {
        "citizen name",
        "nurse name",
        "gp name",
    }
    assert {s.name for s in recorded_ended.seats.values()} == {None}
    rows = await database.fetch("SELECT data FROM bookings WHERE visit = ?", ended.id)
    assert 'name":null' in rows[0][0] and "citizen name" not in rows[0][0]


async def test_not_started_lists_the_bookings_nobody_has_joined(database: Database) -> None:
    archive = SqlVisitArchive(database)
    scheduled, opened, running = new_visit(), new_visit(), new_visit()
    for visit in (scheduled, opened, running):
        await archive.insert(visit)
    opened.transition(VisitState.OPEN)
    running.transition(VisitState.OPEN)
    running.transition(VisitState.IN_PROGRESS)
    for visit in (opened, running):
        visit.revision = 1
        await archive.put(visit)
    assert sorted(v.id for v in await archive.not_started()) == sorted([scheduled.id, opened.id])


async def test_a_booking_the_record_cannot_take_is_refused_and_not_cached(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    async with sqlbackends.backend_for("postgresql", tmp_path) as location:
        db = await location.open()
        try:
            store = DurableVisitStore(await store_backend.open_node(), SqlVisitArchive(db))
            kept = new_visit()
            await store.create(kept)
            # The fault: the database goes away under the open pool.
            assert location.url is not None
            name = urlsplit(location.url).path.lstrip("/")
            admin = PostgresDatabase(sqlbackends.maintenance_url(), max_size=1)
            await admin.open()
            try:
                await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            finally:
                await admin.close()

            refused = new_visit()
            with pytest.raises(RecordUnavailable) as raised:
                await store.create(refused)
            assert raised.value.code == "record-unavailable"
            assert isinstance(raised.value, StoreUnavailable)  # the API answers 503
            with pytest.raises(VisitNotFound):
                await store.cache.get(refused.id)  # never offered as booked
            assert (await store.get(kept.id)).to_dict() == kept.to_dict()  # live state serves
        finally:
            await db.close()


async def test_the_record_lists_finished_visits_only_as_long_as_live_state_kept_them(
    store_backend: StoreBackend, database: Database
) -> None:
    store = await durable(store_backend, database)
    live, ended = new_visit(), new_visit()
    for visit in (live, ended):
        await store.create(visit)
    await store.update(ended.id, lambda v: v.transition(VisitState.ENDED))

    restarted = await after_cache_loss(store_backend, database)
    assert sorted(v.id for v in await restarted.list_by_org("org")) == sorted([live.id, ended.id])
    eight_days_on = DurableVisitStore(
        restarted.cache, restarted.archive, clock=lambda: time.time() + 8 * 86400
    )
    assert [v.id for v in await eight_days_on.list_by_org("org")] == [live.id]
    assert (await eight_days_on.get(ended.id)).state is VisitState.ENDED  # still readable


async def test_bookings_go_with_the_evaluation_data_past_its_retention(database: Database) -> None:
    archive = SqlVisitArchive(database)
    old, recent = new_visit(), new_visit()
    old.updated_at, recent.updated_at = time.time() - 400 * 86400, time.time() - 86400
    for visit in (old, recent):
        await archive.insert(visit)
    await purge_evaluation_data(database, time.time() - 365 * 86400)
    assert await archive.get(old.id) is None
    assert await archive.get(recent.id) is not None


async def test_save_replaces_the_visit_and_records_it(
    store_backend: StoreBackend, database: Database
) -> None:
    store = await durable(store_backend, database)
    visit = new_visit()
    await store.create(visit)
    await store.update(visit.id, lambda v: v.transition(VisitState.OPEN))
    stale = Visit.from_dict(visit.to_dict())  # a copy from before the update (revision 0)
    stale.planned_minutes = 60
    await store.save(stale)

    restarted = await after_cache_loss(store_backend, database)
    saved = await restarted.get(visit.id)
    assert (saved.planned_minutes, saved.state, saved.revision) == (60, VisitState.SCHEDULED, 2)
    with pytest.raises(VisitNotFound):
        await restarted.save(new_visit())
