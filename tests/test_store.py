import pytest

from rooms.errors import VisitNotFound
from rooms.ids import VisitId
from rooms.roles import Role
from rooms.store import MemoryVisitStore
from rooms.visit import Visit, VisitKind, VisitState


async def test_memory_store_returns_copies_and_saves_changes() -> None:
    store = MemoryVisitStore()
    visit = Visit(VisitId("v-1"), VisitKind.CONSULTATION, "org", created_at=0.0)
    visit.add_seat(Role.CITIZEN)
    await store.create(visit)
    copy = await store.get(visit.id)
    copy.transition(VisitState.OPEN)
    assert (await store.get(visit.id)).state is VisitState.SCHEDULED
    await store.save(copy)
    assert (await store.get(visit.id)).state is VisitState.OPEN
    assert [v.id for v in await store.list_by_org("org")] == [visit.id]
    assert await store.list_by_org("other") == []
    with pytest.raises(VisitNotFound):
        await store.get(VisitId("v-missing"))
    with pytest.raises(ValueError):
        await store.create(visit)
