"""A headless participant: joins from an invite link like a browser and reports what it received.

Tests use it, and operators use it as a synthetic probe of a live service.

It reconnects by itself, as the browser page does: when its socket closes or drops (the node
hosting the visit died or drained, close 4006 `node-lost`, or any loss that is not a deliberate
end), it closes its media connection, connects again to the same URL with backoff (0.25, 0.5, 1,
2, 2, ... s), sends `join` with the same token and, once in the call, makes a fresh peer
connection and offers again. It does not reconnect after a fatal `error` (the token was revoked,
the host removed or declined it: a refused re-join ends the run with the error in `errors`),
after `visit-ended`, after a deliberate close (4000, 4001, 4003, 4004, 4005), or once its
`--seconds` (counted from the first `joined`) are over. Only the very first join fails fast
(`BotError`): there is nothing to reconnect to yet.

The report covers the whole run, across connections. Besides the first join's `join_seconds` and
`waited_seconds`, `remotes` (per remote participant: totals of video and audio frames, the latest
resolution, the first ever `first_frame_seconds`, rates from that first frame to the end, and
for a light bot `latency_ms`: p50 and p95 from the publisher's sender to this bot's receiver),
`quality` and `errors`, it has `reconnects` (how many times it joined again) and `recoveries`, one
entry per socket loss: `lost_at` (seconds since the bot started), `rejoined_seconds` (from the
loss to `joined` again) and `media_back_seconds` (from the loss until video has arrived again from
every remote participant that had sent video before the loss); either is null if it never
happened (`media_back_seconds` also when no one had sent video before the loss).
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

from media.client import ClientPeer, RemoteStats
from media.config import IceServer
from media.encoded import EncodedMedia
from signaling.errors import (
    CLOSE_FATAL,
    CLOSE_JOIN_TIMEOUT,
    CLOSE_LEFT,
    CLOSE_REPLACED,
    CLOSE_VISIT_ENDED,
)

#: Seconds to wait before each reconnect attempt (the last one repeats).
RECONNECT_DELAYS = (0.25, 0.5, 1.0, 2.0)
#: Close codes that end a session on purpose: nothing to reconnect to.
FINAL_CLOSE_CODES = frozenset(
    {CLOSE_FATAL, CLOSE_REPLACED, CLOSE_JOIN_TIMEOUT, CLOSE_LEFT, CLOSE_VISIT_ENDED}
)
#: Ping the server this often, so that a socket to a node that vanished silently is noticed.
HEARTBEAT_SECONDS = 10.0
JOIN_TIMEOUT_SECONDS = 15.0


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
    #: The kinds it publishes: none for a participant who only watches and listens (a browser
    #: whose camera and microphone were refused), ("audio",) for one without a camera.
    send: tuple[str, ...] = ("audio", "video")
    #: The only video codecs it offers (say ("video/H264",), as some iPhones); None: all.
    video_codecs: tuple[str, ...] | None = None


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
    #: Whose video this bot was told it cannot decode: `video-unsupported` messages.
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    decoded: bool = True
    #: How many times the bot joined again after losing its socket.
    reconnects: int = 0
    #: One entry per socket loss: `lost_at`, `rejoined_seconds`, `media_back_seconds`.
    recoveries: list[dict[str, float | None]] = field(default_factory=list)

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
            "unsupported": self.unsupported,
            "decoded": self.decoded,
            "reconnects": self.reconnects,
            "recoveries": [dict(r) for r in self.recoveries],
        }


@dataclass
class _Totals:
    """One remote participant's media over the whole run, from every peer connection so far."""

    video_frames: int = 0
    audio_frames: int = 0
    width: int = 0
    height: int = 0
    first_frame_seconds: float | None = None
    first_audio_seconds: float | None = None
    latencies_ms: tuple[float, ...] = ()

    def add(self, stats: RemoteStats) -> _Totals:
        return _Totals(
            self.video_frames + stats.video_frames,
            self.audio_frames + stats.audio_frames,
            stats.width or self.width,
            stats.height or self.height,
            _earliest(self.first_frame_seconds, stats.first_frame_seconds),
            _earliest(self.first_audio_seconds, stats.first_audio_seconds),
            self.latencies_ms + tuple(stats.latencies_ms),
        )

    def latency(self) -> dict[str, float | int] | None:
        """Median and 95th percentile of the stamped frames' latency (ms), when there were any."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return {
            "p50": round(ordered[len(ordered) // 2], 1),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
            "samples": len(ordered),
        }


@dataclass
class _Recovery:
    lost: float
    #: The remote participants that had sent video before the loss, and when (monotonic) each
    #: sent video again.
    owed: frozenset[str]
    back: dict[str, float] = field(default_factory=dict)
    rejoined: float | None = None


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


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
        self._born = time.monotonic()
        self._started = self._born
        self._ice_servers: list[IceServer] = []
        #: Media of the peer connections already closed, per remote participant.
        self._banked: dict[str, _Totals] = {}
        self._recoveries: list[_Recovery] = []
        #: Set by a fatal error, `visit-ended` or a deliberate close: do not reconnect.
        self._final = False

    def video_from(self) -> set[str]:
        """The remote participants whose video this bot has received so far, on any connection."""
        return {p for p, totals in self._totals().items() if totals.video_frames > 0}

    def video_frames(self) -> dict[str, int]:
        """Video frames received so far from each remote participant, on any connection."""
        return {p: totals.video_frames for p, totals in self._totals().items()}

    async def run(self) -> BotReport:
        self._born = time.monotonic()
        options = self._options
        if not options.decode and options.encoded is None:
            # Encoded before joining, so that the join-to-first-frame time is the server's.
            options.encoded = await asyncio.to_thread(
                EncodedMedia.build, options.width, options.height, options.fps, options.hue
            )
        async with aiohttp.ClientSession() as http:
            self._ws = await http.ws_connect(self._ws_url, heartbeat=HEARTBEAT_SECONDS)
            try:
                started = time.monotonic()
                await self._ws.send_json(self._join_message())
                joined = await self._expect_joined(self._ws)
                self.report.join_seconds = time.monotonic() - started
                self._started = started
                you = joined["you"]
                self.report.visit = joined["visit"]["id"]
                self.report.participant = you["participant"]
                self.report.role = you["role"]
                # The run lasts `seconds` from the first join, reconnects included.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._options.seconds):
                        await self._stay(http, joined)
                ws = self._ws
                if ws is not None and not ws.closed:
                    with contextlib.suppress(ConnectionError):
                        await ws.send_json({"type": "leave"})
            finally:
                ended = time.monotonic()
                try:
                    await self._retire_peer()
                finally:
                    self._collect(ended)
                    if self._ws is not None:
                        await self._ws.close()
        return self.report

    def _join_message(self) -> dict[str, Any]:
        return {"type": "join", "token": self._token, "visit": self._visit}

    async def _expect_joined(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive(timeout=JOIN_TIMEOUT_SECONDS)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise BotError("connection-closed", "the server closed the connection before joining")
        data: dict[str, Any] = msg.json()
        if data.get("type") == "error":
            raise BotError(data.get("code", "error"), data.get("message", ""))
        if data.get("type") != "joined":
            raise BotError("unexpected-message", f"expected 'joined', got {data.get('type')!r}")
        return data

    async def _stay(self, http: aiohttp.ClientSession, joined: dict[str, Any]) -> None:
        """Take part until the socket is lost for good; join again after every other loss."""
        while True:
            await self._session(joined)
            if self._final:
                return
            await self._lost()
            rejoined = await self._rejoin(http)
            if rejoined is None:
                return
            joined = rejoined

    async def _session(self, joined: dict[str, Any]) -> None:
        """One connection, from its `joined` until its socket closes."""
        ws = self._ws
        assert ws is not None
        self._offer_pending = self._offer_again = False
        try:
            await self._on_joined(joined)
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                await self._handle(msg.json())
        except (ConnectionError, aiohttp.ClientError):
            pass  # the socket broke under a send: as good as closed
        if ws.close_code in FINAL_CLOSE_CODES:
            self._final = True

    async def _lost(self) -> None:
        """The socket is gone: stop the media (as the page does) and time the recovery."""
        lost = time.monotonic()
        owed = frozenset(p for p, t in self._totals().items() if t.video_frames > 0)
        await self._retire_peer()
        self._recoveries.append(_Recovery(lost=lost, owed=owed))
        old, self._ws = self._ws, None
        if old is not None:
            await old.close()

    async def _rejoin(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        """Connect and join again, with backoff. None when the join is refused for good."""
        attempt = 0
        while True:
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1
            try:
                ws = await http.ws_connect(self._ws_url, heartbeat=HEARTBEAT_SECONDS)
            except (aiohttp.ClientError, OSError):
                continue  # nobody listens (yet): the node is restarting or being replaced
            reply: dict[str, Any] | None = None
            try:
                await ws.send_json(self._join_message())
                msg = await ws.receive(timeout=JOIN_TIMEOUT_SECONDS)
                if msg.type is aiohttp.WSMsgType.TEXT:
                    reply = msg.json()
            except (ConnectionError, aiohttp.ClientError, TimeoutError):
                reply = None
            if reply is not None and reply.get("type") == "joined":
                self._ws = ws
                self.report.reconnects += 1
                self._recoveries[-1].rejoined = time.monotonic()
                return reply
            await ws.close()
            if reply is not None and reply.get("type") == "error":
                self.report.errors.append(
                    {
                        "code": reply.get("code"),
                        "message": reply.get("message"),
                        "fatal": bool(reply.get("fatal")),
                    }
                )
                if reply.get("fatal"):
                    return None
            elif ws.close_code in FINAL_CLOSE_CODES:
                return None

    async def _on_joined(self, joined: dict[str, Any]) -> None:
        you = joined["you"]
        self._ice_servers = [IceServer.from_browser(s) for s in joined["ice_servers"]]
        if self._options.admit_all and you.get("host"):
            for waiting in joined.get("waiting_room", []):
                await self._send({"type": "admit", "participant": waiting["participant"]})
        if not joined["waiting"]:
            if self.report.waited_seconds is None:
                self.report.waited_seconds = 0.0
            await self._enter_call(joined)

    async def _enter_call(self, state: dict[str, Any]) -> None:
        for p in state["participants"]:
            self._roles[p["participant"]] = p
        # Every entry into the call gets a fresh peer connection: close any old one first.
        await self._retire_peer()
        encoded = self._options.encoded
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
            stamped=not self._options.decode,
            send=self._options.send,
            video_codecs=self._options.video_codecs,
        )
        self._peer.ensure_recv_slots(state["recv"])
        await self._offer()

    async def _retire_peer(self) -> None:
        """Close the current peer connection and add what it received to the run's totals."""
        peer, self._peer = self._peer, None
        if peer is None:
            return
        try:
            await peer.close()
        finally:
            self._credit_recoveries(peer)
            for stats in peer.remotes.values():
                self._banked[stats.participant] = self._banked.get(
                    stats.participant, _Totals()
                ).add(stats)

    def _totals(self) -> dict[str, _Totals]:
        totals = dict(self._banked)
        if self._peer is not None:
            for stats in self._peer.remotes.values():
                totals[stats.participant] = totals.get(stats.participant, _Totals()).add(stats)
        return totals

    def _credit_recoveries(self, peer: ClientPeer) -> None:
        """Note when video came back from each participant owed: `peer` is newer than every
        loss so far (peers are closed when the socket is lost), so all its frames came after."""
        for recovery in self._recoveries:
            for participant in recovery.owed - recovery.back.keys():
                stats = peer.remotes.get(participant)
                if stats is not None and stats.first_frame_seconds is not None:
                    recovery.back[participant] = self._started + stats.first_frame_seconds

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
            if self.report.waited_seconds is None:
                self.report.waited_seconds = time.monotonic() - self._started
            await self._enter_call(data)
            return
        if kind == "visit-ended":
            self._final = True
            return
        if kind == "waiting":
            if self._options.admit_all:
                await self._send(
                    {"type": "admit", "participant": data["participant"]["participant"]}
                )
            return
        if kind == "error":
            self.report.errors.append(
                {
                    "code": data.get("code"),
                    "message": data.get("message"),
                    "fatal": bool(data.get("fatal")),
                }
            )
            if data.get("fatal"):
                self._final = True
            if str(data.get("ref", "")).startswith("offer-"):
                self._offer_pending = False
            return
        if kind == "participant-joined":
            self._roles[data["participant"]["participant"]] = data["participant"]
            return
        if kind == "quality":
            self.report.quality[data["participant"]] = data["level"]
            return
        if kind == "video-unsupported":
            self.report.unsupported.append(
                {"participant": data.get("participant"), "codec": data.get("codec")}
            )
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

    def _collect(self, ended: float) -> None:
        now = ended - self._started
        self.report.remotes = [
            {
                "participant": participant,
                "role": self._roles.get(participant, {}).get("role"),
                "name": self._roles.get(participant, {}).get("name"),
                "video_frames": totals.video_frames,
                "audio_frames": totals.audio_frames,
                "resolution": [totals.width, totals.height],
                "first_frame_seconds": _rounded(totals.first_frame_seconds),
                # Delivered rates, from each kind's first frame to the end of the run.
                "video_fps": _rate(totals.video_frames, totals.first_frame_seconds, now),
                "audio_fps": _rate(totals.audio_frames, totals.first_audio_seconds, now),
                # Light bots stamp what they send (media.stamp): publisher to this bot, in ms.
                "latency_ms": totals.latency(),
            }
            for participant, totals in self._totals().items()
        ]
        if self._peer is not None:
            self._credit_recoveries(self._peer)
        self.report.recoveries = [
            {
                "lost_at": _rounded(r.lost - self._born),
                "rejoined_seconds": _rounded(
                    r.rejoined - r.lost if r.rejoined is not None else None
                ),
                "media_back_seconds": _rounded(
                    max(r.back.values()) - r.lost if r.owed and r.owed <= r.back.keys() else None
                ),
            }
            for r in self._recoveries
        ]


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


def _rate(frames: int, first: float | None, now: float) -> float:
    if first is None or now <= first:
        return 0.0
    return round(frames / (now - first), 2)


async def run_bot(link: str, options: BotOptions) -> BotReport:
    return await Bot(link, options).run()
