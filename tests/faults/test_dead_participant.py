"""A dead participant is cut off: the others are told, the event log says why, and /healthz
stops counting them.

Real server process, real aiortc bots (citizen and nurse, sending and receiving media), the host
on a plain socket that records what it is told. Two faults: the nurse's process is stopped with
SIGSTOP (its signaling socket goes silent and its media stops), or only its UDP path goes dark
while its signaling socket lives on: no packet arrives from it any more, and the server cuts it
off after `SCREENVISIT_MEDIA_SILENCE` (6 s by default), long before its ICE consent checks
give up (30-36 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media.encoded import EncodedMedia
from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.ids import VisitId
from rooms.sql import open_database
from signaling.bot import Bot, BotOptions, BotReport
from tests.support.servers import RunningServer, start_server
from tests.support.waiting import until

#: The default seconds of media silence before a participant is cut off.
DEFAULT_MEDIA_SILENCE = 6.0
#: The bound within which a dead participant must be shown as cut off.
CUT_OFF_SECONDS = 15.0


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

    def told(self, kind: str, participant: str) -> Callable[[], Awaitable[bool]]:
        """A condition: the host has been sent a `kind` message about `participant`."""

        async def condition() -> bool:
            try:
                self.first(kind, participant)
            except LookupError:
                return False
            return True

        return condition

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


@contextlib.asynccontextmanager
async def hosted_visit(server: RunningServer) -> AsyncIterator[tuple[dict[str, Any], Listener]]:
    """A visit without a waiting room, its GP (the host) in it on a plain socket."""
    visit = await server.create_visit("--no-waiting-room")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
        token = visit["links"]["gp"].split("#", 1)[1]
        await ws.send_json({"type": "join", "token": token, "visit": visit["visit"]})
        host = Listener(ws)
        try:
            yield visit, host
        finally:
            await host.close()


@dataclass
class Call:
    visit: dict[str, Any]
    host: Listener
    citizen: Bot
    nurse: Bot
    runs: list[asyncio.Task[BotReport]]


@contextlib.asynccontextmanager
async def call_with_media(server: RunningServer) -> AsyncIterator[Call]:
    """The host on a socket, the citizen and the nurse as light bots in this process, video
    flowing between them both ways."""
    encoded = await asyncio.to_thread(EncodedMedia.build, 320, 240, 30, 0)
    async with hosted_visit(server) as (visit, host):
        citizen, nurse = (
            Bot(
                visit["links"][role],
                BotOptions(seconds=120, decode=False, encoded=encoded, width=320, height=240),
            )
            for role in ("citizen", "nurse")
        )
        runs = [asyncio.create_task(bot.run()) for bot in (citizen, nurse)]
        try:

            async def media_both_ways() -> bool:
                return bool(citizen.video_from() and nurse.video_from())

            await until(media_both_ways, 60, "video between the citizen and the nurse")
            yield Call(visit, host, citizen, nurse, runs)
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)


def counting(server: RunningServer, participants: int) -> Callable[[], Awaitable[bool]]:
    """A condition: /healthz counts `participants`."""

    async def condition() -> bool:
        return bool((await server.health())["participants"] == participants)

    return condition


async def events_of(server: RunningServer, visit: str) -> list[VisitEvent]:
    db = await open_database(None, server.data_dir / "metadata.sqlite3")
    try:
        return await SqlEventLog(db).for_visit(VisitId(visit))
    finally:
        await db.close()


async def test_a_frozen_participant_is_cut_off_within_15_s(server: RunningServer) -> None:
    async with hosted_visit(server) as (visit, host):
        links = visit["links"]
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
            told = host.told("participant-reconnecting", nurse)
            await until(told, 45, "the host to be told the nurse is cut off")
            told_after = host.first("participant-reconnecting", nurse)[0] - stopped
            await until(counting(server, 2), 15, "/healthz to stop counting the nurse")
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

    events = await events_of(server, visit["visit"])
    cut = [
        e
        for e in events
        if e.participant == nurse
        and e.kind in (EventKind.PARTICIPANT_RECONNECTING, EventKind.MEDIA_FAILED)
    ]
    assert cut, [(e.kind, e.participant, e.data) for e in events]
    assert cut[0].data.get("reason") in (
        "no-pong",
        "no-media-received",
        "peer-connection-failed",
        "peer-connection-closed",
    )
    assert "Traceback" not in server.log.read_text()


class DarkPath:
    """Stands in for the socket under a peer's nominated ICE pair: every datagram is lost."""

    def __init__(self, pc: Any) -> None:
        transport = pc.getTransceivers()[0].sender.transport.transport
        pair = transport._connection._nominated[1]
        self._socket = pair.protocol.transport
        pair.protocol.transport = self

    def sendto(self, data: bytes, address: Any = None) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)


async def test_a_participant_whose_media_dies_is_cut_off_while_its_socket_lives(
    server: RunningServer,
) -> None:
    async with call_with_media(server) as call:
        host, visit = call.host, call.visit
        nurse = call.nurse.report.participant
        peer = call.nurse._peer
        assert peer is not None
        DarkPath(peer.pc)
        dark = time.monotonic()
        told = host.told("participant-reconnecting", nurse)
        # Not the 30-36 s aioice needs to give up after six unanswered consent checks.
        await until(told, CUT_OFF_SECONDS + 5, "the host to be told the nurse's media is gone")
        told_after = host.first("participant-reconnecting", nurse)[0] - dark
        assert told_after < CUT_OFF_SECONDS
        await until(counting(server, 2), 15, "/healthz to stop counting the nurse")
        print(f"UDP path of the nurse cut: others told after {told_after:.1f} s", end="")
        # Its signaling socket is still open: the cut-off came from the media connection.
        assert not call.runs[1].done()
        # Asking for a new media connection brings it back: the others are told.
        await call.nurse._send({"type": "media-restart"})
        await until(host.told("participant-reconnected", nurse), 15, "the nurse shown back")
        await until(counting(server, 3), 15, "/healthz to count the nurse again")

    events = await events_of(server, visit["visit"])
    failed = [e for e in events if e.participant == nurse and e.kind is EventKind.MEDIA_FAILED]
    assert failed, [(e.kind, e.participant, e.data) for e in events]
    print(f", recorded as media-failed ({failed[0].data['reason']})")
    assert failed[0].data["reason"] == "no-media-received"
    assert "Traceback" not in server.log.read_text()


async def test_the_media_silence_cut_off_is_the_configured_one(tmp_path: Path) -> None:
    """SCREENVISIT_MEDIA_SILENCE shortens the cut-off: with 1.5 s the others are told well
    before the default 6 s of silence could have passed."""
    server = await start_server(
        tmp_path, "--quality-interval", "1", env={"SCREENVISIT_MEDIA_SILENCE": "1.5"}
    )
    try:
        async with call_with_media(server) as call:
            nurse = call.nurse.report.participant
            peer = call.nurse._peer
            assert peer is not None
            DarkPath(peer.pc)
            dark = time.monotonic()
            told = call.host.told("participant-reconnecting", nurse)
            await until(told, CUT_OFF_SECONDS, "the host to be told the nurse's media is gone")
            told_after = call.host.first("participant-reconnecting", nurse)[0] - dark
            print(f"media silence 1.5 s: others told after {told_after:.1f} s")
            assert told_after < DEFAULT_MEDIA_SILENCE
        events = await events_of(server, call.visit["visit"])
        failed = [e for e in events if e.participant == nurse and e.kind is EventKind.MEDIA_FAILED]
        assert [e.data["reason"] for e in failed] == ["no-media-received"]
    finally:
        await server.stop()


async def test_a_connection_closed_on_purpose_is_not_a_media_failure(
    server: RunningServer,
) -> None:
    """A client that closes its peer connection and then says why (here: it restarts its media,
    as the page does) is not cut off, and no media failure is recorded."""
    async with call_with_media(server) as call:
        host, visit = call.host, call.visit
        nurse = call.nurse.report.participant
        peer = call.nurse._peer
        assert peer is not None
        await peer.pc.close()  # the server's end sees the DTLS close: "closed"
        # The page's own pace between closing its connection and asking for a new one.
        await asyncio.sleep(0.3)
        await call.nurse._send({"type": "media-restart"})

        async def restarted() -> bool:
            events = await events_of(server, visit["visit"])
            return any(
                e.kind is EventKind.MEDIA_RESTARTED and e.participant == nurse for e in events
            )

        await until(restarted, 15, "the nurse's media restarted")
        # Past the time a closed peer is given to be explained, and a little more.
        ping_sent = time.monotonic()
        await host.ws.send_json({"type": "ping", "id": "later"})

        async def ponged_after_settle() -> bool:
            return time.monotonic() - ping_sent > 4 and any(
                m["type"] == "pong" for _at, m in host.heard
            )

        await until(ponged_after_settle, 15, "a pong, 4 s on")

    with pytest.raises(LookupError):
        host.first("participant-reconnecting", nurse)
    events = await events_of(server, visit["visit"])
    assert not [e for e in events if e.kind is EventKind.MEDIA_FAILED], [
        (e.kind, e.participant, e.data) for e in events
    ]
