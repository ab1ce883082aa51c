"""A headless participant: joins from an invite link like a browser and reports what it received.

Tests use it, and operators use it as a synthetic probe of a live service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from media.client import ClientPeer
from media.config import IceServer
from media.encoded import EncodedMedia


class BotError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class BotOptions:
    seconds: float = 10.0
    ice_hosts: tuple[str, ...] | None = None
    width: int = 640
    height: int = 480
    fps: int = 30
    hue: int = 0
    #: As a host, let in everyone who waits (an operator's probe, or a test's host).
    admit_all: bool = False
    #: Light mode: count encoded frames instead of decoding, send a loop encoded once.
    decode: bool = True
    #: The loop to send in light mode, shared between bots in one process (built when None).
    encoded: EncodedMedia | None = None


@dataclass
class BotReport:
    visit: str = ""
    participant: str = ""
    role: str = ""
    join_seconds: float | None = None
    waited_seconds: float | None = None
    remotes: list[dict[str, Any]] = field(default_factory=list)
    #: The latest connection-quality level the server announced for each remote participant.
    quality: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    decoded: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "visit": self.visit,
            "participant": self.participant,
            "role": self.role,
            "join_seconds": self.join_seconds,
            "waited_seconds": self.waited_seconds,
            "remotes": self.remotes,
            "quality": self.quality,
            "errors": self.errors,
            "decoded": self.decoded,
        }


def parse_link(link: str) -> tuple[str, str, str]:
    """Return (signaling socket URL, visit id, token) from an invite link."""
    parts = urlsplit(link)
    path = parts.path.rstrip("/").split("/")
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or not parts.fragment
        or len(path) < 2
        or path[-2] != "v"
    ):
        raise BotError("bad-link", "expected an invite link like http://host/v/<visit>#<token>")
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/ws", path[-1], parts.fragment


def default_ice_hosts(link: str) -> tuple[str, ...]:
    """A server on loopback gets a loopback candidate; otherwise every interface (aioice's way)."""
    host = urlsplit(link).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return ("127.0.0.1",) if loopback else ()


class Bot:
    def __init__(self, link: str, options: BotOptions) -> None:
        self._ws_url, self._visit, self._token = parse_link(link)
        self._options = options
        self._ice_hosts = (
            options.ice_hosts if options.ice_hosts is not None else default_ice_hosts(link)
        )
        self.report = BotReport(decoded=options.decode)
        self._roles: dict[str, dict[str, Any]] = {}
        self._peer: ClientPeer | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._offer_pending = False
        self._offer_again = False
        self._offers = 0
        self._started = time.monotonic()
        self._ice_servers: list[IceServer] = []

    async def run(self) -> BotReport:
        async with aiohttp.ClientSession() as http, http.ws_connect(self._ws_url) as ws:
            self._ws = ws
            started = time.monotonic()
            await ws.send_json({"type": "join", "token": self._token, "visit": self._visit})
            joined = await self._expect_joined(ws)
            self.report.join_seconds = time.monotonic() - started
            try:
                await self._on_joined(joined, started)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._options.seconds):
                        async for msg in ws:
                            if msg.type is not aiohttp.WSMsgType.TEXT:
                                break
                            await self._handle(msg.json())
                with contextlib.suppress(ConnectionError):
                    await ws.send_json({"type": "leave"})
            finally:
                self._collect()
                if self._peer is not None:
                    await self._peer.close()
        return self.report

    async def _expect_joined(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive(timeout=15)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise BotError("connection-closed", "the server closed the connection before joining")
        data: dict[str, Any] = msg.json()
        if data.get("type") == "error":
            raise BotError(data.get("code", "error"), data.get("message", ""))
        if data.get("type") != "joined":
            raise BotError("unexpected-message", f"expected 'joined', got {data.get('type')!r}")
        return data

    async def _on_joined(self, joined: dict[str, Any], started: float) -> None:
        you = joined["you"]
        self.report.visit = joined["visit"]["id"]
        self.report.participant = you["participant"]
        self.report.role = you["role"]
        self._started = started
        self._ice_servers = [IceServer.from_browser(s) for s in joined["ice_servers"]]
        if self._options.admit_all and you.get("host"):
            for waiting in joined.get("waiting_room", []):
                await self._send({"type": "admit", "participant": waiting["participant"]})
        if not joined["waiting"]:
            self.report.waited_seconds = 0.0
            await self._enter_call(joined)

    async def _enter_call(self, state: dict[str, Any]) -> None:
        for p in state["participants"]:
            self._roles[p["participant"]] = p
        encoded = self._options.encoded
        if not self._options.decode and encoded is None:
            options = self._options
            encoded = await asyncio.to_thread(
                EncodedMedia.build, options.width, options.height, options.fps, options.hue
            )
        self._peer = ClientPeer(
            ice_servers=self._ice_servers,
            ice_hosts=self._ice_hosts,
            width=self._options.width,
            height=self._options.height,
            fps=self._options.fps,
            hue=self._options.hue,
            started=self._started,
            decode=self._options.decode,
            send_encoded=not self._options.decode,
            encoded=encoded,
        )
        self._peer.ensure_recv_slots(state["recv"])
        await self._offer()

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_json(message)

    async def _offer(self) -> None:
        assert self._peer is not None and self._ws is not None
        if self._offer_pending:
            self._offer_again = True
            return
        self._offer_pending = True
        self._offers += 1
        sdp = await self._peer.create_offer()
        await self._ws.send_json({"type": "offer", "id": f"offer-{self._offers}", "sdp": sdp})

    async def _handle(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "admitted":
            self.report.waited_seconds = time.monotonic() - self._started
            await self._enter_call(data)
            return
        if kind == "waiting":
            if self._options.admit_all:
                await self._send(
                    {"type": "admit", "participant": data["participant"]["participant"]}
                )
            return
        if kind == "error":
            self.report.errors.append({"code": data.get("code"), "message": data.get("message")})
            if str(data.get("ref", "")).startswith("offer-"):
                self._offer_pending = False
            return
        if kind == "participant-joined":
            self._roles[data["participant"]["participant"]] = data["participant"]
            return
        if kind == "quality":
            self.report.quality[data["participant"]] = data["level"]
            return
        if self._peer is None:
            return
        if kind == "answer":
            await self._peer.apply_answer(data["sdp"])
            self._peer.track_map = data["tracks"]
            self._offer_pending = False
            if self._offer_again:
                self._offer_again = False
                await self._offer()
        elif kind == "tracks":
            self._peer.track_map = data["tracks"]
        elif kind == "renegotiate":
            self._peer.ensure_recv_slots(data["recv"])
            await self._offer()

    def _collect(self) -> None:
        if self._peer is None:
            return
        now = time.monotonic() - self._started
        self.report.remotes = [
            {
                "participant": stats.participant,
                "role": self._roles.get(stats.participant, {}).get("role"),
                "name": self._roles.get(stats.participant, {}).get("name"),
                "video_frames": stats.video_frames,
                "audio_frames": stats.audio_frames,
                "resolution": [stats.width, stats.height],
                "first_frame_seconds": (
                    round(stats.first_frame_seconds, 3)
                    if stats.first_frame_seconds is not None
                    else None
                ),
                # Delivered rates, from each kind's first frame to the end of the run.
                "video_fps": _rate(stats.video_frames, stats.first_frame_seconds, now),
                "audio_fps": _rate(stats.audio_frames, stats.first_audio_seconds, now),
            }
            for stats in self._peer.remotes.values()
        ]


def _rate(frames: int, first: float | None, now: float) -> float:
    if first is None or now <= first:
        return 0.0
    return round(frames / (now - first), 2)


async def run_bot(link: str, options: BotOptions) -> BotReport:
    return await Bot(link, options).run()
