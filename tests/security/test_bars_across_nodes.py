"""A removal holds across nodes: the visit's owner is killed, another node takes the visit over
from Redis alone, and still refuses the removed participant until a host readmits them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from redis.asyncio import Redis

from tests.security.sockets import next_of
from tests.support.cluster import PrivateRedis, postgres_url, redis_server, start_node
from tests.support.servers import RunningServer

__all__ = ["postgres_url", "redis_server"]


def visit_and_token(link: str) -> tuple[str, str]:
    visit, token = link.split("/v/", 1)[1].split("#", 1)
    return visit, token


async def open_join(
    http: aiohttp.ClientSession, node: RunningServer, link: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any] | None]:
    """A socket on `node` that has sent `join`; the first answer, or None if it just closed."""
    visit, token = visit_and_token(link)
    ws = await http.ws_connect(f"ws://127.0.0.1:{node.port}/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    msg = await ws.receive(timeout=20)
    return ws, msg.json() if msg.type is WSMsgType.TEXT else None


async def settled_answer(
    http: aiohttp.ClientSession, node: RunningServer, link: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Join on `node` until the answer is not 'try again' (the visit is still moving)."""
    deadline = time.monotonic() + 60
    while True:
        ws, first = await open_join(http, node, link)
        if first is not None and first.get("code") not in ("service-unavailable",):
            return ws, first
        await ws.close()
        assert time.monotonic() < deadline, f"no settled answer on {node.port}: {first}"
        await asyncio.sleep(0.2)  # the visit is moving: ask again shortly


async def test_a_removal_survives_the_loss_of_the_node_that_made_it(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    nodes = {
        name: await start_node(tmp_path, name, redis_server.url, postgres_url)
        for name in ("sb-a", "sb-b")
    }
    booked = await nodes["sb-a"].create_visit("--no-waiting-room")
    visit, links = booked["visit"], booked["links"]
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    owner_name = await redis.get(f"screenvisit:visit:{visit}:node")
    await redis.aclose()
    owner = nodes.pop(str(owner_name))
    (survivor,) = nodes.values()
    http = aiohttp.ClientSession()
    try:
        gp, joined = await open_join(http, owner, links["gp"])
        assert joined is not None and joined["type"] == "joined"
        citizen, joined = await open_join(http, owner, links["citizen"])
        assert joined is not None and joined["type"] == "joined"
        citizen_id = joined["you"]["participant"]
        await gp.send_json({"type": "remove", "participant": citizen_id})
        assert (await next_of(citizen, "error"))["code"] == "removed"
        await next_of(gp, "barred")

        owner.process.kill()
        await owner.process.wait()
        again, first = await settled_answer(http, survivor, links["citizen"])
        assert (first["type"], first.get("code")) == ("error", "barred"), first
        await again.close()

        gp, joined = await settled_answer(http, survivor, links["gp"])
        assert joined["type"] == "joined", joined
        assert [p["participant"] for p in joined["barred"]] == [citizen_id]
        await gp.send_json({"type": "readmit", "participant": citizen_id})
        await next_of(gp, "readmitted")
        citizen, joined = await settled_answer(http, survivor, links["citizen"])
        assert (joined["type"], joined["waiting"]) == ("joined", False), joined
    finally:
        await http.close()
        if owner.process.returncode is None:
            owner.process.kill()
            await owner.process.wait()
        await survivor.stop()
