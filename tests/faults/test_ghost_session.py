"""An unexpected error in a session's handler still leaves the seat: no ghost stays "in call".

The fault is real: the live state's redis-server (started by this test on its own port) is killed
with SIGKILL while two participants are in the call, then the host sends `end`, whose handler
reads the visit from the live state. Nothing in the server is patched.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.errors import CLOSE_INTERNAL
from tests.support.cluster import PrivateRedis, redis_server
from tests.support.servers import RunningServer, start_server
from tests.support.waiting import until

__all__ = ["redis_server"]


@pytest.fixture
async def server(tmp_path: Path, redis_server: PrivateRedis) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path, env={"SCREENVISIT_REDIS_URL": redis_server.url})
    yield running
    await running.stop()


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=20)
        assert msg.type is aiohttp.WSMsgType.TEXT, f"waiting for {kind}: {msg}"
        data: dict[str, Any] = json.loads(msg.data)
        if data["type"] == kind:
            return data


async def test_a_session_whose_handler_fails_leaves_its_seat(
    server: RunningServer, redis_server: PrivateRedis
) -> None:
    visit = await server.create_visit("--no-waiting-room")
    tokens = {role: link.split("#", 1)[1] for role, link in visit["links"].items()}
    async with aiohttp.ClientSession() as http:
        sockets = {}
        for role in ("gp", "citizen"):
            ws = await http.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
            await ws.send_json({"type": "join", "token": tokens[role], "visit": visit["visit"]})
            sockets[role] = ws
            joined = await receive_type(ws, "joined")
            assert not joined["waiting"]
        gp, citizen = sockets["gp"], sockets["citizen"]
        host = joined["participants"][0]["participant"]
        await receive_type(gp, "participant-joined")
        assert (await server.health())["participants"] == 2

        await redis_server.kill()
        await gp.send_json({"type": "end", "id": "end-1"})

        reply = await gp.receive(timeout=30)
        if reply.type is aiohttp.WSMsgType.TEXT:
            # The server answered the failure (an error the protocol names): the session lives
            # on, and so its seat is rightly still taken.
            print(f"the host was answered: {reply.data}")
            await gp.send_json({"type": "ping", "id": "p"})
            assert (await receive_type(gp, "pong"))["ref"] == "p"
            assert (await server.health())["participants"] == 2
        else:
            # The session ended: its seat must be left, and the others told.
            assert gp.close_code == CLOSE_INTERNAL, (reply, gp.close_code)
            started = time.monotonic()
            told = await receive_type(citizen, "participant-reconnecting")
            assert told["participant"] == host

            async def not_counted() -> bool:
                return (await server.health())["participants"] == 1

            await until(not_counted, 20, "/healthz to stop counting the failed session")
            print(
                f"the failed host was shown reconnecting after {time.monotonic() - started:.2f} s"
            )
        await citizen.close()
        await gp.close()

    log = server.log.read_text()
    failure = [line for line in log.splitlines() if "session handler failed" in line]
    if reply.type is not aiohttp.WSMsgType.TEXT:
        assert failure and visit["visit"] in failure[0], log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    for token in tokens.values():
        assert token not in log
