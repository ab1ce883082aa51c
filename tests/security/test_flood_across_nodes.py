"""A participant whose socket sits on another node than the visit (the edge) and stops reading:
the edge closes it as too slow, the owner releases the seat at once, and the close reaches the
participant (it is never dropped). Two nodes in this process share a private Redis."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from server import appkeys
from server.app import create_app
from server.config import Settings
from signaling.limits import ANY, Rate
from tests.conftest import book
from tests.security.sockets import Client, StallingProxy, closed_with, join, next_of
from tests.support.cluster import PrivateRedis, postgres_url, redis_server
from tests.support.flood import chat_until_one_is_dropped

__all__ = ["postgres_url", "redis_server"]


async def keep_talking(ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        while not ws.closed:
            await ws.send_json({"type": "ping"})
            await asyncio.sleep(2)


async def test_a_stalled_socket_on_the_edge_node_is_closed_and_its_seat_released(
    redis_server: PrivateRedis,
    postgres_url: str,
    aiohttp_client: Any,
    settings: Settings,
) -> None:
    keepalive: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    shared = replace(
        settings, redis_url=redis_server.url, database_url=postgres_url, drain_timeout=2
    )
    nodes: dict[str, Client] = {}
    for name in ("ea", "eb"):
        app: web.Application = create_app(replace(shared, node_id=name))
        nodes[name] = await aiohttp_client(app)
        services = nodes[name].app[appkeys.SIGNALING]
        # The sender stands for many people talking at once: its own chat is not limited.
        unlimited = Rate(burst=1e6, per_second=1e6)
        services.limits = services.limits.with_rate("chat", unlimited).with_rate(ANY, unlimited)
    visit, tokens = await book(nodes["ea"].app)
    sender, _ = await join(nodes["ea"], tokens["gp"], visit.id)
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    owner_name = str(await redis.get(f"screenvisit:visit:{visit.id}:node"))
    await redis.aclose()
    owner = nodes.pop(owner_name)
    (edge,) = nodes.values()
    if owner_name != "ea":
        sender, _ = await join(owner, tokens["gp"], visit.id)  # straight to the owner

    assert edge.port is not None
    proxy = StallingProxy(edge.port)
    await proxy.start()
    http = aiohttp.ClientSession()
    try:
        victim = await http.ws_connect(f"http://127.0.0.1:{proxy.port}/ws")
        await victim.send_json({"type": "join", "token": tokens["nurse"], "visit": visit.id})
        victim_id = (await next_of(victim, "joined"))["you"]["participant"]
        await next_of(sender, "participant-joined")

        proxy.stall()
        # The victim still talks (only its reading stalled), so the server's heartbeat never
        # gives up on it: what closes it must be the full queue.
        keepalive = asyncio.create_task(keep_talking(victim))
        # Paced so that the owner's session keeps up: what backs up is the edge's queue.
        gone, sent = await chat_until_one_is_dropped(
            sender, letter="z", batch=10, read_timeout=0.02, timeout=90
        )
        assert gone == victim_id
        keepalive.cancel()

        proxy.resume()
        code, seen = await closed_with(victim, timeout=30)
        assert code == 4002, (code, [m["type"] for m in seen][-5:])
        assert len(seen) < sent
    finally:
        keepalive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keepalive
        await http.close()
        await proxy.stop()
