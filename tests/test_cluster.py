"""The cluster state (nodes, placements, presence): one suite, memory and the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from rooms.cluster import (
    ClusterState,
    MemoryClusterState,
    NodeId,
    NodeInfo,
    NoNodeAvailable,
    choose_node,
)
from rooms.ids import ParticipantId, VisitId
from rooms.redis_cluster import RedisClusterState
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
    assert await cluster.place(VISIT, A) == A
    assert await cluster.place(VISIT, B) == A  # already pinned
    assert await cluster.move(VISIT, B, B) == A  # B does not own it: nothing moves
    assert await cluster.move(VISIT, A, B) == B
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


def test_a_new_visit_goes_to_the_least_loaded_node_that_is_not_draining() -> None:
    nodes = [NodeInfo(A, "a", load=1), NodeInfo(B, "b", load=5), NodeInfo(NodeId("c"), "c", 0)]
    nodes[2] = NodeInfo(NodeId("c"), "c", load=0, draining=True)
    assert choose_node(nodes).id == A
    with pytest.raises(NoNodeAvailable):
        choose_node([NodeInfo(A, "a", draining=True)])
