"""The live visit store: every shared test runs on the memory store and on the real Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from rooms.errors import InvalidTransition, VisitNotFound
from rooms.ids import VisitId, new_visit_id
from rooms.redis_store import RedisVisitStore
from rooms.roles import Role
from rooms.store import (
    MemoryVisitStore,
    StaleLease,
    StoreConflict,
    StoreUnavailable,
    VisitStore,
    encode_visit,
    open_visit_store,
)
from rooms.visit import Visit, VisitKind, VisitState
from tests import storebackends
from tests.storebackends import StoreBackend, redis_url

# The fixtures, bound here so that pytest finds them: each shared test runs once per backend.
store_backend = storebackends.store_backend
visit_store = storebackends.visit_store
redis_backend = storebackends.redis_backend


def new_visit(org: str = "org", *roles: Role) -> Visit:
    visit = Visit(new_visit_id(), VisitKind.CONSULTATION, org, created_at=1_700_000_000.5)
    for role in roles or (Role.CITIZEN, Role.NURSE, Role.GP):
        visit.add_seat(role, name=f"{role.value} name")
    return visit


def ids(visits: list[Visit]) -> list[VisitId]:
    return sorted(v.id for v in visits)


def add_relative(visit: Visit) -> None:
    visit.max_participants = 50
    visit.add_seat(Role.RELATIVE)


async def test_store_returns_copies_and_saves_changes(visit_store: VisitStore) -> None:
    visit = Visit(VisitId("v-1"), VisitKind.CONSULTATION, "org", created_at=0.0)
    visit.add_seat(Role.CITIZEN)
    await visit_store.create(visit)
    copy = await visit_store.get(visit.id)
    copy.transition(VisitState.OPEN)
    assert (await visit_store.get(visit.id)).state is VisitState.SCHEDULED
    await visit_store.save(copy)
    assert (await visit_store.get(visit.id)).state is VisitState.OPEN
    assert [v.id for v in await visit_store.list_by_org("org")] == [visit.id]
    assert await visit_store.list_by_org("other") == []
    with pytest.raises(VisitNotFound):
        await visit_store.get(VisitId("v-missing"))
    with pytest.raises(ValueError):
        await visit_store.create(visit)


async def test_create_get_save_and_list_by_org_round_trip(visit_store: VisitStore) -> None:
    first, second = new_visit("org-a"), new_visit("org-a", Role.CITIZEN, Role.SPECIALIST)
    elsewhere = new_visit("org-b")
    for visit in (first, second, elsewhere):
        await visit_store.create(visit)

    got = await visit_store.get(first.id)
    assert got.to_dict() == first.to_dict()
    assert got is not first
    first.transition(VisitState.OPEN)  # the caller's object is not the stored one
    assert (await visit_store.get(first.id)).state is VisitState.SCHEDULED

    await visit_store.save(first)
    assert (await visit_store.get(first.id)).to_dict() == first.to_dict()

    listed = await visit_store.list_by_org("org-a")
    assert ids(listed) == sorted([first.id, second.id])
    assert {v.id: v.to_dict() for v in listed} == {
        first.id: first.to_dict(),
        second.id: second.to_dict(),
    }
    assert ids(await visit_store.list_by_org("org-b")) == [elsewhere.id]
    assert await visit_store.list_by_org("org-c") == []


async def test_save_of_a_missing_visit_is_refused(visit_store: VisitStore) -> None:
    with pytest.raises(VisitNotFound):
        await visit_store.save(new_visit())
    assert await visit_store.list_by_org("org") == []


async def test_create_twice_is_refused_and_keeps_the_first(visit_store: VisitStore) -> None:
    visit = new_visit()
    await visit_store.create(visit)
    duplicate = Visit(visit.id, VisitKind.CONFERENCE, "other-org", created_at=5.0)
    with pytest.raises(ValueError, match="exists"):
        await visit_store.create(duplicate)
    assert (await visit_store.get(visit.id)).to_dict() == visit.to_dict()
    assert await visit_store.list_by_org("other-org") == []


async def test_update_applies_the_change_and_persists_it(visit_store: VisitStore) -> None:
    visit = new_visit()
    await visit_store.create(visit)

    updated = await visit_store.update(visit.id, lambda v: v.transition(VisitState.OPEN))

    assert updated.state is VisitState.OPEN
    stored = await visit_store.get(visit.id)
    assert stored.to_dict() == updated.to_dict()
    assert stored.state is VisitState.OPEN
    assert stored.org == visit.org
    assert [s.to_dict() for s in stored.seats.values()] == [
        s.to_dict() for s in visit.seats.values()
    ]
    assert [v.state for v in await visit_store.list_by_org("org")] == [VisitState.OPEN]


async def test_an_update_whose_change_raises_writes_nothing(visit_store: VisitStore) -> None:
    visit = new_visit()
    await visit_store.create(visit)

    def bad_change(v: Visit) -> None:
        add_relative(v)  # mutates the copy before failing
        v.transition(VisitState.IN_PROGRESS)  # scheduled -> in-progress is not allowed

    with pytest.raises(InvalidTransition) as raised:
        await visit_store.update(visit.id, bad_change)
    assert raised.value.current == "scheduled"
    assert (await visit_store.get(visit.id)).to_dict() == visit.to_dict()
    # The store is still usable afterwards.
    assert len((await visit_store.update(visit.id, add_relative)).seats) == 4


async def test_update_of_a_missing_visit_raises_not_found(visit_store: VisitStore) -> None:
    called: list[Visit] = []
    with pytest.raises(VisitNotFound):
        await visit_store.update(VisitId("v-missing"), called.append)
    assert called == []


async def test_concurrent_updates_from_two_nodes_all_land_once(
    store_backend: StoreBackend,
    visit_store: VisitStore,
) -> None:
    other_node = await store_backend.open_node()
    visit = new_visit("org", Role.CITIZEN)
    await visit_store.create(visit)

    nodes = [visit_store, other_node] * 10
    results = await asyncio.gather(*(node.update(visit.id, add_relative) for node in nodes))

    final = await other_node.get(visit.id)
    assert len(final.seats) == 1 + 20
    assert [s.role for s in final.seats.values()].count(Role.RELATIVE) == 20
    # Every update's own result is contained in the final state: nothing was overwritten.
    seen = {participant for result in results for participant in result.seats}
    assert seen == set(final.seats)
    assert sorted(len(result.seats) for result in results) == list(range(2, 22))


async def test_a_write_under_a_stale_lease_epoch_is_refused(
    store_backend: StoreBackend, visit_store: VisitStore
) -> None:
    other_node = await store_backend.open_node()
    visit = new_visit("org", Role.CITIZEN)
    await visit_store.create(visit)
    await visit_store.update(visit.id, add_relative, epoch=1)
    # Another node took the lease over (epoch 2) and wrote.
    await other_node.update(visit.id, add_relative, epoch=2)
    called: list[Visit] = []
    with pytest.raises(StaleLease):
        await visit_store.update(visit.id, called.append, epoch=1)
    assert called == []
    stored = await visit_store.get(visit.id)
    assert (stored.fence, len(stored.seats)) == (2, 3)
    # The current epoch writes on; an unfenced write (a booking change) leaves the fence be.
    await visit_store.update(visit.id, add_relative, epoch=2)
    assert (await visit_store.update(visit.id, add_relative)).fence == 2


async def test_no_write_under_the_old_epoch_lands_after_the_new_one(
    store_backend: StoreBackend, visit_store: VisitStore
) -> None:
    """Two nodes racing, the old owner (epoch 1) and the new one (epoch 2): each write numbers
    itself; every write of the old owner that landed came before every one of the new."""
    other_node = await store_backend.open_node()
    visit = new_visit("org", Role.CITIZEN)
    await visit_store.create(visit)
    landed: dict[int, list[int]] = {1: [], 2: []}

    async def write(store: VisitStore, epoch: int) -> None:
        def count(v: Visit) -> None:
            v.revision += 1

        try:
            result = await store.update(visit.id, count, epoch=epoch)
        except StaleLease:
            return
        landed[epoch].append(result.revision)

    await asyncio.gather(
        *(
            write(store, epoch)
            for _ in range(8)
            for store, epoch in ((visit_store, 1), (other_node, 2))
        )
    )
    assert len(landed[2]) == 8
    assert max(landed[1], default=0) < min(landed[2])


async def test_finished_visits_expire_in_redis_and_stay_readable(
    store_backend: StoreBackend,
    visit_store: VisitStore,
) -> None:
    live, ended, cancelled = new_visit(), new_visit(), new_visit()
    for visit in (live, ended, cancelled):
        await visit_store.create(visit)

    def end(v: Visit) -> None:
        v.transition(VisitState.OPEN)
        v.transition(VisitState.ENDED)

    await visit_store.update(ended.id, end)
    cancelled.transition(VisitState.CANCELLED)
    await visit_store.save(cancelled)

    assert (await visit_store.get(ended.id)).state is VisitState.ENDED
    assert (await visit_store.get(cancelled.id)).state is VisitState.CANCELLED
    assert ids(await visit_store.list_by_org("org")) == sorted([live.id, ended.id, cancelled.id])
    if isinstance(visit_store, RedisVisitStore):
        ttl = store_backend.ended_ttl_seconds
        assert 0 < await visit_store.client.ttl(visit_store.visit_key(ended.id)) <= ttl
        assert 0 < await visit_store.client.ttl(visit_store.visit_key(cancelled.id)) <= ttl
        assert await visit_store.client.ttl(visit_store.visit_key(live.id)) == -1  # no expiry
    else:
        assert isinstance(visit_store, MemoryVisitStore)


async def test_delete_forgets_the_visit(visit_store: VisitStore) -> None:
    visit, kept = new_visit(), new_visit()
    await visit_store.create(visit)
    await visit_store.create(kept)

    await visit_store.delete(visit.id)

    with pytest.raises(VisitNotFound):
        await visit_store.get(visit.id)
    with pytest.raises(VisitNotFound):
        await visit_store.save(visit)
    assert ids(await visit_store.list_by_org("org")) == [kept.id]
    await visit_store.delete(visit.id)  # missing: no error
    await visit_store.delete(VisitId("v-never"))
    await visit_store.create(visit)  # the id may be used again
    assert ids(await visit_store.list_by_org("org")) == sorted([visit.id, kept.id])


async def test_open_visit_store_picks_the_implementation(store_backend: StoreBackend) -> None:
    url = redis_url() if store_backend.name == "redis" else None
    store = await open_visit_store(url, prefix=store_backend.prefix)
    try:
        expected = RedisVisitStore if store_backend.name == "redis" else MemoryVisitStore
        assert type(store) is expected
        visit = new_visit()
        await store.create(visit)
        assert (await store.get(visit.id)).to_dict() == visit.to_dict()
    finally:
        await store.close()
    assert type(await open_visit_store("")) is MemoryVisitStore


async def test_open_visit_store_refuses_an_unreachable_redis() -> None:
    with pytest.raises(StoreUnavailable) as raised:
        await open_visit_store("redis://someone:s3cret%2Dpw@127.0.0.1:1/0")
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "s3cret-pw" not in message and "someone" not in message
    assert "ConnectionError" in message


# What only Redis does: its exact stored form, expiry, retries and raw-bytes clients.


async def test_redis_stores_the_whole_to_dict_json(redis_backend: StoreBackend) -> None:
    store = await redis_backend.open_node()
    assert isinstance(store, RedisVisitStore)
    visit = new_visit("org:with:colons")
    await store.create(visit)
    key = f"{redis_backend.prefix}visit:{visit.id}"
    assert store.visit_key(visit.id) == key
    raw = await store.client.get(key)
    assert raw is not None
    assert json.loads(raw) == visit.to_dict()
    org_key = f"{redis_backend.prefix}org:org:with:colons:visits"
    assert await store.client.smembers(org_key) == {visit.id}
    assert ids(await store.list_by_org("org:with:colons")) == [visit.id]


async def test_redis_expired_visits_leave_the_org_index_when_listed(
    redis_backend: StoreBackend,
) -> None:
    store = await redis_backend.open_node()
    assert isinstance(store, RedisVisitStore)
    gone, kept = new_visit(), new_visit()
    await store.create(gone)
    await store.create(kept)
    await store.client.pexpire(store.visit_key(gone.id), 1)
    await asyncio.sleep(0.05)
    assert await store.client.sismember(store.org_key("org"), gone.id)

    assert ids(await store.list_by_org("org")) == [kept.id]
    assert await store.client.smembers(store.org_key("org")) == {kept.id}
    with pytest.raises(VisitNotFound):
        await store.get(gone.id)


async def test_redis_update_retries_after_a_concurrent_write(redis_backend: StoreBackend) -> None:
    store = await redis_backend.open_node()
    assert isinstance(store, RedisVisitStore)
    visit = new_visit()
    await store.create(visit)
    key = store.visit_key(visit.id)
    calls: list[int] = []

    other_node = redis.Redis.from_url(redis_url(), decode_responses=True)

    def change_racing_another_node(v: Visit) -> None:
        calls.append(len(v.seats))
        if len(calls) == 1:  # another node writes between our read and our EXEC
            theirs = Visit.from_dict(v.to_dict())
            add_relative(theirs)
            other_node.set(key, encode_visit(theirs))
        add_relative(v)

    try:
        result = await store.update(visit.id, change_racing_another_node)
    finally:
        other_node.close()
    assert calls == [3, 4]  # the retry saw the other node's seat
    assert len(result.seats) == 5
    assert (await store.get(visit.id)).to_dict() == result.to_dict()


async def test_redis_update_gives_up_with_a_clear_error(redis_backend: StoreBackend) -> None:
    store = await redis_backend.open_node(max_attempts=3)
    assert isinstance(store, RedisVisitStore)
    visit = new_visit()
    await store.create(visit)
    key = store.visit_key(visit.id)
    calls: list[int] = []

    other_node = redis.Redis.from_url(redis_url(), decode_responses=True)

    def always_loses(v: Visit) -> None:
        calls.append(len(v.seats))
        other_node.set(key, encode_visit(v))  # touches the watched key every time
        v.transition(VisitState.OPEN)

    try:
        with pytest.raises(StoreConflict, match=f"visit {visit.id}.*3 attempts"):
            await store.update(visit.id, always_loses)
    finally:
        other_node.close()
    assert calls == [3, 3, 3]
    assert (await store.get(visit.id)).state is VisitState.SCHEDULED


async def test_redis_store_works_with_a_bytes_client(redis_backend: StoreBackend) -> None:
    store = RedisVisitStore(redis.asyncio.from_url(redis_url()), redis_backend.prefix)
    try:
        visit = new_visit()
        await store.create(visit)
        assert (await store.get(visit.id)).to_dict() == visit.to_dict()
        assert ids(await store.list_by_org("org")) == [visit.id]
        await store.update(visit.id, add_relative)
        await store.delete(visit.id)
        assert await store.list_by_org("org") == []
    finally:
        await store.close()
