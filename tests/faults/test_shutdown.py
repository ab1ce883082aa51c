"""SIGTERM during a call: the node tells every participant, keeps reading their messages while
it drains, then ends the visit it cannot hand on (recorded with reason `shutdown`), or hands it
to another node, and exits 0.

Real nodes, bots, and one raw signaling socket that watches what a participant is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from rooms.sql import open_database
from tests.support.bots import finish, flowing, seeing_each_other, start_bots
from tests.support.cluster import (
    PrivateRedis,
    events_of,
    on_node,
    postgres_url,
    redis_server,
    start_node,
)
from tests.support.servers import start_server
from tests.support.waiting import until

__all__ = ["postgres_url", "redis_server"]

#: Long enough to ping the draining node on a loaded machine; the test waits for events, not it.
DRAIN_SECONDS = 8


class Watcher:
    """A participant without media: joins and keeps every message it is sent."""

    def __init__(self, link: str) -> None:
        address, rest = link.split("://", 1)[1].split("/v/", 1)
        self.visit, self.token = rest.split("#", 1)
        self.url = f"ws://{address}/ws"
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._arrived = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def run(self) -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(self.url) as ws:
            self._ws = ws
            await ws.send_json({"type": "join", "token": self.token, "visit": self.visit})
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.messages.append(json.loads(msg.data))
                    self._arrived.set()
            self.close_code = ws.close_code

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_json(message)

    async def first(self, kind: str, timeout: float) -> dict[str, Any]:
        """The first message of type `kind`, waiting for it up to `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if message.get("type") == kind:
                        return message
                self._arrived.clear()
                await self._arrived.wait()


async def test_sigterm_tells_everyone_keeps_reading_ends_the_visit_with_reason_shutdown(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, env={"SCREENVISIT_DRAIN_TIMEOUT": str(DRAIN_SECONDS)})
    watching: asyncio.Task[None] | None = None
    try:
        booked = await server.create_visit("--no-waiting-room")
        visit, links = booked["visit"], booked["links"]
        bots, tasks = start_bots([links["citizen"], links["gp"]], 90)
        watcher = Watcher(links["nurse"])
        watching = asyncio.create_task(watcher.run())
        await watcher.first("joined", 20)
        await until(seeing_each_other(bots), 40, "media between the bots")

        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        notice = await watcher.first("server-shutdown", 20)
        told = time.monotonic() - signalled
        assert notice["moving"] is False and notice["seconds"] == DRAIN_SECONDS
        # Draining, the node still reads what participants send.
        await watcher.send({"type": "ping", "id": "while-draining"})
        pong = await watcher.first("pong", 10)
        assert pong["ref"] == "while-draining"
        assert (await server.health())["status"] == "draining"

        assert await asyncio.wait_for(server.process.wait(), 60) == 0
        print(
            f"\nSIGTERM, drain timeout {DRAIN_SECONDS} s: notice after {told:.2f} s,"
            f" exit 0 after {time.monotonic() - signalled:.1f} s"
        )
        await asyncio.wait_for(watching, 10)
        assert [m["type"] for m in watcher.messages][-1] == "visit-ended"
        assert watcher.close_code == 4005
        reports = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for report in reports:
            assert report.errors == [], report.errors
            assert report.reconnects == 0  # the visit ended: nothing to reconnect to

        db = await open_database(None, server.data_dir / "metadata.sqlite3")
        try:
            events = await events_of(db, visit)
        finally:
            await db.close()
        left = {p for kind, p, data in events if kind == "participant-left"}
        reasons = {data.get("reason") for kind, _p, data in events if kind == "participant-left"}
        everyone = {r.participant for r in reports} | {_me(watcher)}
        assert left == everyone and reasons == {"shutdown"}, events
        ended = [data for kind, _p, data in events if kind == "visit-ended"]
        assert ended == [{"reason": "shutdown"}], events
        assert "Traceback" not in server.log.read_text()
    finally:
        if watching is not None and not watching.done():
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        await server.stop()


def _me(watcher: Watcher) -> str:
    joined = next(m for m in watcher.messages if m["type"] == "joined")
    return str(joined["you"]["participant"])


async def test_sigterm_with_another_node_up_moves_everyone_there_and_exits_0(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    a = await start_node(
        tmp_path, "sd-a", redis_server.url, postgres_url, SCREENVISIT_DRAIN_TIMEOUT="4"
    )
    b = await start_node(tmp_path, "sd-b", redis_server.url, postgres_url)
    db = await open_database(postgres_url, tmp_path / "unused.sqlite3")
    watching: asyncio.Task[None] | None = None
    try:
        booked = await a.create_visit("--no-waiting-room")  # on A: least loaded, by id
        visit, links = booked["visit"], booked["links"]
        bots, tasks = start_bots([on_node(links[r], b) for r in ("citizen", "gp")], 90)
        watcher = Watcher(on_node(links["nurse"], b))
        watching = asyncio.create_task(watcher.run())
        await until(seeing_each_other(bots), 40, "media through node A")

        a.process.send_signal(signal.SIGTERM)
        notice = await watcher.first("server-shutdown", 20)
        assert notice["moving"] is True
        assert await asyncio.wait_for(a.process.wait(), 60) == 0
        await asyncio.wait_for(watching, 20)
        assert watcher.close_code == 4006  # moved: reconnect (to node B)
        before = [bot.video_frames() for bot in bots]
        await until(flowing(bots, before), 40, "media on node B")
        reports = await finish(tasks, bots)
        for report in reports:
            assert report.errors == [], report.errors
            assert report.reconnects >= 1
        kinds = [kind for kind, _p, _d in await events_of(db, visit)]
        assert "visit-moved" in kinds and "visit-ended" not in kinds
        assert "Traceback" not in a.log.read_text()
    finally:
        if watching is not None and not watching.done():
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        await db.close()
        for node in (a, b):
            await node.stop()
