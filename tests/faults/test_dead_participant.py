"""A participant whose process freezes (SIGSTOP) is cut off within 15 s: the others are told,
the event log says why, and /healthz stops counting them.

Real server process, real aiortc bots as their own processes (citizen and nurse, sending and
receiving media), the host on a plain socket that records what it is told. The nurse's process
is stopped with SIGSTOP: its signaling socket goes silent and its ICE consent lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rooms.eventlog import EventKind, SqlEventLog
from rooms.ids import VisitId
from rooms.sql import open_database
from tests.support.servers import RunningServer, start_server

#: The bound within which a dead participant must be shown as cut off.
CUT_OFF_SECONDS = 15.0


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path, "--quality-interval", "1")
    yield running
    await running.stop()


async def start_bot(link: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "server.cli", "bot", link, "--seconds", "120", "--json", "--no-decode"),
        *("--width", "320", "--height", "240"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def stop_bot(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
        await process.wait()


class Listener:
    """The host's socket: reads (and so answers the server's pings) and keeps every message."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.heard: list[tuple[float, dict[str, Any]]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.heard.append((time.monotonic(), json.loads(msg.data)))

    def first(self, kind: str, participant: str | None = None) -> tuple[float, dict[str, Any]]:
        for at, message in self.heard:
            if message["type"] != kind:
                continue
            who = message.get("participant")
            who = who.get("participant") if isinstance(who, dict) else who
            if participant is None or who == participant:
                return at, message
        raise LookupError(kind)

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_frozen_participant_is_cut_off_within_15_s(server: RunningServer) -> None:
    visit = await server.create_visit("--no-waiting-room")
    links = visit["links"]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
        token = links["gp"].split("#", 1)[1]
        await ws.send_json({"type": "join", "token": token, "visit": visit["visit"]})
        host = Listener(ws)
        bots = {role: await start_bot(links[role]) for role in ("citizen", "nurse")}
        try:
            seats: dict[str, str] = {}

            async def both_joined() -> bool:
                for _at, message in host.heard:
                    if message["type"] == "participant-joined":
                        seats[message["participant"]["role"]] = message["participant"][
                            "participant"
                        ]
                return {"citizen", "nurse"} <= seats.keys()

            await until(both_joined, 60, "the citizen and the nurse in the call")
            nurse = seats["nurse"]

            async def media_flows() -> bool:
                health = await server.health()
                return bool(health["media"]["frames_forwarded"] > 200)

            await until(media_flows, 60, "media forwarded between the bots")
            assert (await server.health())["participants"] == 3

            bots["nurse"].send_signal(signal.SIGSTOP)
            stopped = time.monotonic()

            async def told() -> bool:
                try:
                    host.first("participant-reconnecting", nurse)
                except LookupError:
                    return False
                return True

            async def not_counted() -> bool:
                return bool((await server.health())["participants"] == 2)

            await until(told, 45, "the host to be told the nurse is cut off")
            told_after = host.first("participant-reconnecting", nurse)[0] - stopped
            await until(not_counted, 15, "/healthz to stop counting the nurse")
            uncounted_after = time.monotonic() - stopped
            print(
                f"SIGSTOPped nurse: others told after {told_after:.1f} s, /healthz stopped"
                f" counting it after {uncounted_after:.1f} s"
            )
            assert told_after < CUT_OFF_SECONDS
            # The citizen was never cut off.
            citizen = seats["citizen"]
            with pytest.raises(LookupError):
                host.first("participant-reconnecting", citizen)
        finally:
            for process in bots.values():
                await stop_bot(process)
            await host.close()

    db = await open_database(None, server.data_dir / "metadata.sqlite3")
    try:
        events = await SqlEventLog(db).for_visit(VisitId(visit["visit"]))
    finally:
        await db.close()
    cut = [
        e
        for e in events
        if e.participant == nurse
        and e.kind in (EventKind.PARTICIPANT_RECONNECTING, EventKind.MEDIA_FAILED)
    ]
    assert cut, [(e.kind, e.participant, e.data) for e in events]
    assert cut[0].data.get("reason") in (
        "no-pong",
        "peer-connection-failed",
        "peer-connection-closed",
    )
