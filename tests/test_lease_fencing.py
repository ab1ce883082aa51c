"""Every decision of a hub is fenced by its node's lease epoch: a node whose lease of a visit
was taken over, while it still believes it holds it (paused, then woken before its heartbeat
noticed), cannot admit or write the visit any more; its sockets are sent on (to reconnect)."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType

from rooms.cluster import NodeId
from rooms.roles import Role
from rooms.visit import Visit
from server import appkeys
from signaling.errors import CLOSE_NODE_LOST
from tests.conftest import book
from tests.test_waiting_room import Client, join, kinds, next_of


async def test_a_node_whose_lease_was_taken_over_cannot_admit(client: Client) -> None:
    visit, tokens = await book(client.app, Role.CITIZEN, Role.GP, waiting_room=True)
    gp, _ = await join(client, tokens["gp"], visit.id)
    await join(client, tokens["citizen"], visit.id)
    citizen = (await next_of(gp, "waiting"))["participant"]["participant"]

    # The lease moves to node B (it is released and placed anew: epoch 2), and B writes the
    # visit; this node has not noticed (no heartbeat has lapsed).
    node, store = client.app[appkeys.NODE], client.app[appkeys.STORE]
    held = await node.cluster.lease(visit.id)
    assert held is not None and held.node == node.id
    await node.cluster.release(visit.id, node.id)
    taken = await node.cluster.place(visit.id, NodeId("node-b"))
    assert taken.epoch > held.epoch

    def noop(_visit: Visit) -> None:
        return None

    await store.update(visit.id, noop, epoch=taken.epoch)
    assert node.epoch(visit.id) == held.epoch

    await gp.send_json({"type": "admit", "participant": citizen})
    refused = await next_of(gp, "error")
    assert (refused["code"], refused["fatal"]) == ("node-lost", True)
    closing = await gp.receive(timeout=10)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, CLOSE_NODE_LOST)
    assert "participant-admitted" not in await kinds(client, visit.id)

    stored = await store.get(visit.id)
    assert stored.fence == taken.epoch


async def test_a_node_whose_lease_was_taken_over_writes_no_presence_and_no_event(
    client: Client,
) -> None:
    """Presence (who is in the call) and the event log are fenced too: a leave on a node whose
    lease moved on changes neither, and the node stops serving the visit."""
    visit, tokens = await book(client.app, Role.CITIZEN, Role.GP)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    node = client.app[appkeys.NODE]
    present = await node.cluster.in_call(visit.id)
    assert len(present) == 2
    held = await node.cluster.lease(visit.id)
    assert held is not None and held.node == node.id
    await node.cluster.release(visit.id, node.id)
    taken = await node.cluster.place(visit.id, NodeId("node-b"))
    assert taken.epoch > held.epoch and node.epoch(visit.id) == held.epoch
    recorded = await kinds(client, visit.id)

    await citizen.send_json({"type": "leave"})
    try:
        async with asyncio.timeout(15):  # the host is sent on, not kept (quality, pings, ...)
            while (message := await gp.receive()).type is WSMsgType.TEXT:
                pass
    finally:
        await gp.close()
        await citizen.close()
    assert (message.type, message.data) == (WSMsgType.CLOSE, CLOSE_NODE_LOST)
    assert await node.cluster.in_call(visit.id) == present
    assert await kinds(client, visit.id) == recorded
    assert visit.id not in client.app[appkeys.HUBS].hubs
