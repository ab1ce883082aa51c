"""The bot reconnects by itself when its node is lost, and stops for good when it must.

Real server processes (killed with SIGKILL and replaced on the same port and data folder), a
real redis-server of the test's own (tests.support.cluster) for the live state that must outlive
the node, real aiortc bots as their own processes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from rooms.sql import open_database
from signaling.errors import CLOSE_NODE_LOST
from tests.support.cluster import PrivateRedis, redis_server
from tests.support.servers import RunningServer, cli, run_bot, start_server
from tests.support.waiting import until

__all__ = ["redis_server"]

ROLES = ("citizen", "nurse", "gp")
#: How long each bot of the restart test stays, from its first join.
SECONDS = 30.0


@pytest.fixture
def redis_env(redis_server: PrivateRedis) -> dict[str, str]:
    return {"SCREENVISIT_REDIS_URL": redis_server.url}


async def kill(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGKILL)
    assert await server.process.wait() == -signal.SIGKILL


def test_node_lost_is_its_own_close_code() -> None:
    assert CLOSE_NODE_LOST == 4006
    protocol = (Path(__file__).resolve().parent.parent / "signaling" / "PROTOCOL.md").read_text()
    assert "4006" in protocol and "node-lost" in protocol


async def test_three_bots_come_back_after_their_server_is_killed_and_replaced(
    tmp_path: Path, redis_env: dict[str, str]
) -> None:
    first = await start_server(tmp_path, "--quality-interval", "1", env=redis_env)
    servers = [first]
    bots: list[asyncio.Task[dict[str, Any]]] = []
    try:
        visit = await first.create_visit("--no-waiting-room")
        bots = [asyncio.create_task(run_bot(visit["links"][role], SECONDS)) for role in ROLES]

        async def in_call_with_media() -> bool:
            health = await first.health()
            # Three publishers, each forwarded to two: a few seconds of it reach everyone.
            return bool(health["participants"] == 3 and health["media"]["frames_forwarded"] > 2000)

        await until(in_call_with_media, 40, "three bots in the call with media flowing")
        await kill(first)
        # A new node on the same port and data folder; the visit lives on in Redis.
        second = await start_server(
            tmp_path,
            "--quality-interval",
            "1",
            port=first.port,
            env=redis_env,
            log_name="server-2.log",
        )
        servers.append(second)

        async def all_back() -> bool:
            return bool((await second.health())["participants"] == 3)

        await until(all_back, 20, "all three bots joined on the new server")
        reports = await asyncio.wait_for(asyncio.gather(*bots), timeout=SECONDS + 40)
    finally:
        for task in bots:
            task.cancel()
        for server in servers:
            await server.stop()

    for role, report in zip(ROLES, reports, strict=True):
        assert report["exit_code"] == 0, report
        assert report["role"] == role and report["visit"] == visit["visit"], report
        assert report["reconnects"] >= 1, report
        recovery = report["recoveries"][0]
        assert recovery["lost_at"] > 0, report
        assert recovery["rejoined_seconds"] is not None, report
        # Video came back from both others, each of which had sent video before the loss.
        assert recovery["media_back_seconds"] is not None, report
        assert recovery["media_back_seconds"] >= recovery["rejoined_seconds"], report
        remotes = {r["role"]: r for r in report["remotes"]}
        # The same two participants (by id) before and after, their totals over the whole run.
        assert len(report["remotes"]) == 2 and set(remotes) == set(ROLES) - {role}, report
        for remote in remotes.values():
            assert remote["first_frame_seconds"] < recovery["lost_at"], report
            assert remote["video_frames"] > 60 and remote["audio_frames"] > 100, report
            assert remote["resolution"] == [320, 240], report
            assert remote["video_fps"] > 0 and remote["audio_fps"] > 0, report
        print(json.dumps(report))
        print(
            f"{role}: lost at {recovery['lost_at']} s, rejoined after "
            f"{recovery['rejoined_seconds']} s, video from both others back after "
            f"{recovery['media_back_seconds']} s; reconnects {report['reconnects']}"
        )


async def test_a_rejoin_refused_for_good_ends_the_run_with_its_error(tmp_path: Path) -> None:
    # The server that replaces the killed one knows nothing of the visit: live state was in
    # memory, and the booking is taken out of the record before it starts.
    first = await start_server(tmp_path)
    servers = [first]
    try:
        visit = await first.create_visit("--no-waiting-room")
        bot = asyncio.create_task(run_bot(visit["links"]["citizen"], SECONDS))

        async def joined() -> bool:
            # Media from the bot: it has its `joined` answer (counted alone, the server may
            # be killed before that answer leaves, and the first join then fails instead).
            health = await first.health()
            return bool(health["participants"] == 1 and health["media"]["frames_received"] > 0)

        await until(joined, 30, "the bot in the call, sending media")
        await kill(first)
        started = time.monotonic()
        db = await open_database(None, first.data_dir / "metadata.sqlite3")
        try:
            await db.execute("DELETE FROM bookings WHERE visit = ?", visit["visit"])
        finally:
            await db.close()
        servers.append(await start_server(tmp_path, port=first.port, log_name="server-2.log"))
        report = await asyncio.wait_for(bot, timeout=SECONDS + 20)
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            await server.stop()

    assert report["exit_code"] == 4, report  # refused: the CLI says so and exits non-zero
    assert report["verdict"].startswith("refused: visit-not-found"), report
    assert [e["code"] for e in report["errors"]] == ["visit-not-found"], report
    assert report["reconnects"] == 0, report
    assert len(report["recoveries"]) == 1, report
    assert report["recoveries"][0]["rejoined_seconds"] is None, report
    assert report["recoveries"][0]["media_back_seconds"] is None, report
    assert elapsed < SECONDS / 2, report  # it stopped at the refusal, not at --seconds


async def join_as(ws: aiohttp.ClientWebSocketResponse, link: str, visit: str) -> dict[str, Any]:
    await ws.send_json({"type": "join", "token": link.split("#", 1)[1], "visit": visit})
    joined: dict[str, Any] = await ws.receive_json(timeout=10)
    assert joined["type"] == "joined", joined
    return joined


async def until_message(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=30)
        if message["type"] == kind:
            return message


async def test_a_revoked_token_ends_the_bot_without_reconnecting(server: RunningServer) -> None:
    visit = await server.create_visit("--no-waiting-room")
    link = visit["links"]["citizen"]
    jti = jwt.decode(link.split("#", 1)[1], options={"verify_signature": False})["jti"]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{server.port}/ws") as gp,
    ):
        await join_as(gp, visit["links"]["gp"], visit["visit"])
        started = time.monotonic()
        bot = asyncio.create_task(run_bot(link, SECONDS))
        await until_message(gp, "participant-joined")
        code, _out, err = await cli(server, "token", "revoke", "--", jti)
        assert code == 0, err
        report = await asyncio.wait_for(bot, timeout=SECONDS + 20)
        elapsed = time.monotonic() - started

    assert report["exit_code"] == 4, report  # refused: the CLI says so and exits non-zero
    assert "token-revoked" in [e["code"] for e in report["errors"]], report
    assert report["reconnects"] == 0 and report["recoveries"] == [], report
    assert elapsed < SECONDS / 2, report


async def test_the_end_of_the_visit_ends_the_bot_without_reconnecting(
    server: RunningServer,
) -> None:
    visit = await server.create_visit("--no-waiting-room")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{server.port}/ws") as gp,
    ):
        await join_as(gp, visit["links"]["gp"], visit["visit"])
        started = time.monotonic()
        bot = asyncio.create_task(run_bot(visit["links"]["citizen"], SECONDS))
        await until_message(gp, "participant-joined")
        await gp.send_json({"type": "end"})
        report = await asyncio.wait_for(bot, timeout=SECONDS + 20)
        elapsed = time.monotonic() - started

    assert report["exit_code"] == 0, report
    assert report["reconnects"] == 0 and report["recoveries"] == [], report
    assert report["errors"] == [], report
    assert elapsed < SECONDS / 2, report
