"""The operator's commands against a running server: revoke a live participant, read the audit."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import jwt

from tests.support.servers import RunningServer, cli, run_bot


async def test_revoking_a_link_throws_its_holder_out_and_the_audit_shows_it(
    server: RunningServer,
) -> None:
    visit = await server.create_visit()
    link = visit["links"]["citizen"]
    jti = jwt.decode(link.split("#", 1)[1], options={"verify_signature": False})["jti"]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{server.port}/ws") as ws,
    ):
        await ws.send_json(
            {"type": "join", "token": link.split("#", 1)[1], "visit": visit["visit"]}
        )
        assert (await ws.receive_json(timeout=10))["type"] == "joined"
        # Read on while the command runs, as a browser does: the socket answers the server's
        # heartbeat pings only while someone reads, and a command may take seconds to start.
        told = asyncio.create_task(ws.receive_json(timeout=60))
        code, out, err = await cli(server, "token", "revoke", "--", jti)
        assert code == 0, err
        assert "closed 1 live session" in out
        error = await told
        assert (error["code"], error["fatal"]) == ("token-revoked", True)
        assert (await ws.receive(timeout=10)).type is aiohttp.WSMsgType.CLOSE

    code, out, err = await cli(server, "audit", "--visit", visit["visit"], "--json")
    assert code == 0, err
    records = json.loads(out)
    decisions = {(r["action"], r["result"], r["reason"]) for r in records}
    assert ("join", "allowed", None) in decisions
    join = next(r for r in records if r["action"] == "join")
    assert (join["role"], join["sector"], join["client"]) == ("citizen", "citizen", "127.0.0.1")
    assert link.split("#", 1)[1] not in out

    rejoin = await run_bot(link, 2)
    assert rejoin["error"]["code"] == "token-revoked"
