"""The cross-node bus: one suite, the in-process twin and real Redis pub/sub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from signaling.bus import Bus, BusUnavailable, LocalBus, LocalBusNetwork, Message, RedisBus
from tests.storebackends import redis_client


@pytest.fixture(params=["local", "redis"])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Bus, Bus]]:
    """Two nodes' buses on one network."""
    clients = []
    if request.param == "local":
        network = LocalBusNetwork()
        pair: tuple[Bus, Bus] = (LocalBus(network), LocalBus(network))
    else:
        clients = [redis_client(), redis_client()]
        pair = (RedisBus(clients[0]), RedisBus(clients[1]))
    yield pair
    for bus in pair:
        await bus.close()
    for client in clients:
        await client.aclose()


async def test_messages_reach_the_subscribed_node_in_order_and_no_other(
    buses: tuple[Bus, Bus],
) -> None:
    first, second = buses
    channel, other = f"test:{uuid4().hex}", f"test:{uuid4().hex}"
    got: asyncio.Queue[Message] = asyncio.Queue()
    elsewhere: list[Message] = []
    await second.subscribe([channel], got.put_nowait)
    await second.subscribe([other], elsewhere.append)
    for n in range(50):
        await first.publish(channel, {"type": "frame", "n": n})
    received = [await asyncio.wait_for(got.get(), 5) for _ in range(50)]
    assert [m["n"] for m in received] == list(range(50))
    assert elsewhere == []


async def test_publishing_without_redis_raises_bus_unavailable() -> None:
    from redis.asyncio import Redis

    client = Redis(port=1, socket_connect_timeout=1)
    bus = RedisBus(client)
    with pytest.raises(BusUnavailable):
        await bus.publish("test:nowhere", {"type": "frame"})
    await bus.close()
    await client.aclose()
