"""The cluster state (nodes, placements, presence): one suite, memory and the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from rooms.cluster import (
    ClusterState,
    Lease,
    MemoryClusterState,
    NodeId,
    NodeInfo,
    NoNodeAvailable,
    choose_node,
)
from rooms.ids import ParticipantId, VisitId
from rooms.redis_cluster import RedisClusterState
from rooms.store import StaleLease
from tests.storebackends import delete_prefixed, redis_client

A, B = NodeId("node-a"), NodeId("node-b")
VISIT = VisitId("v-cluster-test")
#: Short enough that a test can watch a registration expire.
TTL = 0.3


@pytest.fixture(params=["memory", "redis"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[ClusterState]:
    if request.param == "memory":
        yield MemoryClusterState(node_ttl=TTL)
        return
    prefix = f"sv-test-{uuid4().hex}:"
    state = RedisClusterState(redis_client(), prefix, node_ttl=TTL)
    try:
        yield state
    finally:
        await state.close()
        await delete_prefixed(prefix)


async def test_a_node_is_alive_while_it_beats_and_gone_when_it_stops(
    cluster: ClusterState,
) -> None:
    assert await cluster.register(NodeInfo(A, "10.0.0.1", load=2)) is True
    assert await cluster.register(NodeInfo(A, "10.0.0.1", load=3)) is False
    node = await cluster.node(A)
    assert node is not None and node.load == 3 and node.address == "10.0.0.1"
    # The registration lapses by itself: a node that stops beating is dead.
    deadline = asyncio.get_running_loop().time() + 5
    while await cluster.node(A) is not None:
        assert asyncio.get_running_loop().time() < deadline, "registration never expired"
        await asyncio.sleep(TTL / 3)
    assert await cluster.nodes() == []
    assert await cluster.register(NodeInfo(A, "10.0.0.1")) is True  # forgotten: re-sync


async def test_placement_is_first_come_moves_only_from_the_named_node_and_releases(
    cluster: ClusterState,
) -> None:
    assert await cluster.owner(VISIT) is None
    assert (await cluster.place(VISIT, A)).node == A
    assert (await cluster.place(VISIT, B)).node == A  # already pinned
    assert (await cluster.move(VISIT, B, B)).node == A  # B does not own it: nothing moves
    assert (await cluster.move(VISIT, A, B)).node == B
    await cluster.release(VISIT, A)  # not A's any more
    assert await cluster.owner(VISIT) == B
    await cluster.release(VISIT, B)
    assert await cluster.owner(VISIT) is None


async def test_presence_lists_who_is_in_the_call_until_the_visit_is_forgotten(
    cluster: ClusterState,
) -> None:
    one, two = ParticipantId("p-one"), ParticipantId("p-two")
    await cluster.place(VISIT, A)
    await cluster.join_call(VISIT, one)
    await cluster.join_call(VISIT, two)
    await cluster.leave_call(VISIT, two)
    assert await cluster.in_call(VISIT) == {one}
    await cluster.forget_visit(VISIT, A)
    assert await cluster.in_call(VISIT) == set()
    assert await cluster.owner(VISIT) is None


async def test_each_new_owner_gets_a_higher_epoch_and_a_live_owner_keeps_its_lease(
    cluster: ClusterState,
) -> None:
    assert await cluster.lease(VISIT) is None
    first = await cluster.place(VISIT, A)
    assert first.node == A and first.epoch >= 1
    assert await cluster.place(VISIT, B) == first  # already held: same owner, same epoch
    assert await cluster.lease(VISIT) == first
    # While A's registration lives nobody may take the visit from it: so a node whose
    # registration is fresh knows its leases are current without asking.
    await cluster.register(NodeInfo(A, "a"))
    assert await cluster.move(VISIT, A, B) == first
    await cluster.deregister(A)
    second = await cluster.move(VISIT, A, B)
    assert second == Lease(B, first.epoch + 1)
    # The epoch never goes back, not even after a release: a fencing token.
    await cluster.release(VISIT, B)
    assert await cluster.lease(VISIT) is None
    third = await cluster.place(VISIT, A)
    assert third == Lease(A, second.epoch + 1)


async def test_a_node_confirms_only_the_lease_it_holds_at_its_epoch(
    cluster: ClusterState,
) -> None:
    held = await cluster.place(VISIT, A)
    assert await cluster.confirm(VISIT, held) is True
    assert await cluster.confirm(VISIT, Lease(A, held.epoch - 1)) is False
    assert await cluster.confirm(VISIT, Lease(B, held.epoch)) is False
    # A node that woke from a pause after the visit moved on has lost it for good.
    moved = await cluster.move(VISIT, A, B)
    assert await cluster.confirm(VISIT, held) is False
    await cluster.release(VISIT, B)
    assert await cluster.confirm(VISIT, moved) is False  # released, not forgotten
    assert await cluster.lease(VISIT) is None


async def test_a_lease_the_shared_state_forgot_is_written_back_by_its_holder(
    cluster: ClusterState,
) -> None:
    """After a Redis restart nothing is known of the visit: its holder confirms it back."""
    held = Lease(A, 7)
    assert await cluster.confirm(VISIT, held) is True
    assert await cluster.lease(VISIT) == held
    assert (await cluster.move(VISIT, A, B)).epoch == 8


def test_a_new_visit_goes_to_the_least_loaded_node_that_is_not_draining() -> None:
    nodes = [NodeInfo(A, "a", load=1), NodeInfo(B, "b", load=5), NodeInfo(NodeId("c"), "c", 0)]
    nodes[2] = NodeInfo(NodeId("c"), "c", load=0, draining=True)
    assert choose_node(nodes).id == A
    with pytest.raises(NoNodeAvailable):
        choose_node([NodeInfo(A, "a", draining=True)])


async def test_placement_by_live_load_spreads_a_burst_evenly_and_follows_ends_and_moves(
    cluster: ClusterState,
) -> None:
    """Heartbeats report no load before anybody joins: a burst of bookings is spread by the
    visits each node hosts now (counted atomically at placement), ties taken in turn."""
    visits = [VisitId(f"v-spread-{i}") for i in range(4)]
    leases = await asyncio.gather(*(cluster.place_least_loaded(v, [A, B]) for v in visits))
    owners = [lease.node for lease in leases]
    assert sorted(owners) == [A, A, B, B]
    assert await cluster.place_least_loaded(visits[0], [A, B]) == leases[0]  # already placed
    assert await cluster.hosted(A) == 2 and await cluster.hosted(B) == 2
    # An ended visit no longer counts: the next one goes where it ended.
    await cluster.forget_visit(visits[owners.index(B)], B)
    assert await cluster.hosted(B) == 1
    assert (await cluster.place_least_loaded(VisitId("v-spread-4"), [A, B])).node == B
    # A visit moved off a dead node counts on its new node only.
    moved = visits[owners.index(A)]
    assert (await cluster.move(moved, A, B)).node == B
    assert await cluster.hosted(A) == 1 and await cluster.hosted(B) == 3
    assert (await cluster.place_least_loaded(VisitId("v-spread-5"), [B, A])).node == A
    # A single candidate takes everything; none at all is an error.
    assert (await cluster.place_least_loaded(VisitId("v-spread-6"), [B])).node == B
    with pytest.raises(NoNodeAvailable):
        await cluster.place_least_loaded(VisitId("v-spread-7"), [])


async def test_presence_writes_under_an_old_lease_epoch_are_refused(
    cluster: ClusterState,
) -> None:
    """Fenced like the visit's live state: once the lease moved on (a higher epoch), a write
    of who is in the call under the old epoch is refused, in the same atomic step."""
    one, two = ParticipantId("p-1"), ParticipantId("p-2")
    old = await cluster.place(VISIT, A)
    await cluster.join_call(VISIT, one, epoch=old.epoch)
    await cluster.check_epoch(VISIT, old.epoch)
    await cluster.release(VISIT, A)
    new = await cluster.place(VISIT, B)
    assert new.epoch > old.epoch
    await cluster.join_call(VISIT, two, epoch=new.epoch)
    with pytest.raises(StaleLease):
        await cluster.leave_call(VISIT, two, epoch=old.epoch)
    with pytest.raises(StaleLease):
        await cluster.join_call(VISIT, ParticipantId("p-3"), epoch=old.epoch)
    with pytest.raises(StaleLease):
        await cluster.check_epoch(VISIT, old.epoch)
    assert await cluster.in_call(VISIT) == {one, two}
    await cluster.check_epoch(VISIT, new.epoch)
    await cluster.leave_call(VISIT, one, epoch=new.epoch)
    await cluster.leave_call(VISIT, two)  # unfenced (no lease known): as before
    assert await cluster.in_call(VISIT) == set()
