"""Server CPU per forwarded packet: screenvisit against Janus's VideoRoom, same load, interleaved.

    python3 -m bench.vs_janus [--pairs 3] [--rooms 2] [--window 10]
    python3 -m bench.vs_janus --pairs 1 --rooms 1 --window 6     # a quick look

Needs Debian's `janus` package (`apt-get install -y janus`: Janus 1.1.2 on bookworm).

Each pair runs both servers in turn, one after the other (the order alternates from pair to
pair, so a machine that gets busier or quieter during the run favours neither), under the same
light-bot three-way load: per room three participants, each a process of this module publishing
the project's pre-encoded loop (`media.encoded`: VP8 640x480@30 at about 1.2 Mbps with
camera-like grain, and Opus; encoded once by the bench for all runs) and receiving the other
two, counting encoded frames without decoding them (`media.client.ClientPeer`).

- screenvisit: `screenvisit serve --no-demo` in its own process on loopback, N visits booked
  with `screenvisit visit create --no-waiting-room`; the bots are `signaling.bot.Bot`, the light
  bot of `screenvisit bot --no-decode`. Packets forwarded, by the server's count:
  `screenvisit_forwarded_packets_total` on its /metrics (RTP packets sent to subscribers).
- Janus: `janus` with a configuration this script writes into a temporary folder (the HTTP
  transport and its admin API on free loopback ports, the VideoRoom plugin, nothing else). One
  room per three-way room, created over the HTTP API; each bot is one Janus session over HTTP
  (long poll for events) with two handles, as Janus's own clients do: a publisher (`join` as
  publisher, then `configure` with an aiortc offer, Janus answers) and a subscriber (`join` as
  subscriber to the other two publishers' feeds, Janus offers, `start` with the answer).
  Packets forwarded, by the server's count: the admin API's `handle_info`, the sum of
  `webrtc.media[*].stats.out.packets` over all handles (only subscriber handles send media).
  libnice gathers no loopback candidates, so Janus's ICE uses this machine's own address
  (`ice_enforce_list`); datagrams to it are delivered by the kernel through the loopback device
  as well, the path screenvisit's 127.0.0.1 takes.

Both: once every bot receives video from both others, two seconds to settle, then over
`--window` seconds the server process's CPU time (user + system of all its threads, from
/proc/<pid>/stat) and its forwarded packets; CPU per forwarded packet is their quotient. The
ratio screenvisit / Janus is taken within each pair; the summary gives its median and range.
Also printed per run: the packets the bots received (recv/s: on a machine too busy for the
bots they fall behind what the server sent), the video frame rate they saw (median and lowest
stream) and how busy the whole machine was, since bots and server share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import pickle
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiortc import RTCSessionDescription

from bench.media_forwarding import (
    ROLES,
    _cli,
    _create_visit,
)
from bench.three_way_room import free_port
from media.client import ClientPeer
from media.encoded import EncodedMedia
from media.ice import restrict_host_candidates
from media.rtx import route_rtx_for
from signaling.bot import Bot, BotOptions

#: A server's start-up (imports, migrations) on a busy shared machine.
START_TIMEOUT_SECONDS = 120.0
SERVERS = ("janus", "screenvisit")
SETTLE_SECONDS = 2.0
#: How long every participant may take to receive video from both others.
#: Each `screenvisit bot` encodes its loop when it starts: some 20 s of CPU on a busy 2-core
#: machine, and they start together.
STEADY_TIMEOUT_SECONDS = 90.0
STEADY_TIMEOUT_PER_ROOM_SECONDS = 45.0
#: A Janus bot reports its counters this often (lines of JSON on stdout).
SAMPLE_SECONDS = 0.25
#: The plugin and transport Janus loads (symlinked into private folders: nothing else loads).
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
VIDEOROOM = "janus.plugin.videoroom"
LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Janus's admin API secret (the API listens on loopback only, for this run).
ADMIN_SECRET = "bench"
#: Servers run at this niceness (raised priority, root only): see --nice.
DEFAULT_NICE = -10 if os.geteuid() == 0 else 0


@dataclass
class Run:
    server: str
    rooms: int
    #: CPU-seconds per second of the server process over the window.
    server_cpu: float = 0.0
    window_seconds: float = 0.0
    #: RTP packets per second the server sent to subscribers, by its own count (screenvisit's
    #: /metrics, Janus's admin API)...
    server_packets_per_second: float = 0.0
    #: ...and those the subscribing bots received (audio and video).
    packets_per_second: float = 0.0
    machine_busy: float = 0.0
    fps: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def us_per_packet(self) -> float:
        """Server CPU per packet forwarded, by the server's own count."""
        if not self.server_packets_per_second:
            return math.nan
        return 1e6 * self.server_cpu / self.server_packets_per_second


def local_address() -> str:
    """This machine's own IPv4 address (of the interface its default route uses). libnice, so
    Janus, gathers no candidates on loopback; datagrams to this address still stay in the kernel
    (the local routing table), so both servers' media use it, as the same path."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no datagram is sent: this only picks a route
        address: str = probe.getsockname()[0]
    return address


def process_cpu(pid: int) -> float:
    """User + system CPU-seconds of a process and all its threads, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) is in parentheses and may hold spaces: split after it.
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def machine_idle() -> tuple[float, float]:
    times = psutil.cpu_times()
    return float(times.idle + getattr(times, "iowait", 0.0)), float(sum(times))


# --- Janus over its HTTP API -------------------------------------------------------------


class JanusSession:
    """One Janus session over the HTTP transport: requests by POST, events by long poll."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.session_id = 0
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._http.post(f"{self._url}{path}", json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {reply['error']}")
        return reply

    def _transaction(self) -> str:
        return f"t{next(self._ids)}"

    async def create(self) -> None:
        reply = await self._post("", {"janus": "create", "transaction": self._transaction()})
        self.session_id = reply["data"]["id"]
        self._poller = asyncio.create_task(self._poll())

    async def attach(self) -> int:
        reply = await self._post(
            f"/{self.session_id}",
            {"janus": "attach", "plugin": VIDEOROOM, "transaction": self._transaction()},
        )
        handle: int = reply["data"]["id"]
        return handle

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request: the plugin's answer comes in the reply."""
        reply = await self._post(
            f"/{self.session_id}/{handle}",
            {"janus": "message", "body": body, "transaction": self._transaction()},
        )
        data: dict[str, Any] = reply["plugindata"]["data"]
        if "error" in data:
            raise RuntimeError(f"videoroom: {data['error']}")
        return data

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An asynchronous plugin request: acknowledged at once, answered by an event."""
        transaction = self._transaction()
        event = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = event
        message: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            message["jsep"] = jsep
        await self._post(f"/{self.session_id}/{handle}", message)
        try:
            return await asyncio.wait_for(event, timeout=30)
        finally:
            self._waiting.pop(transaction, None)

    async def _poll(self) -> None:
        while True:
            async with self._http.get(
                f"{self._url}/{self.session_id}", params={"maxev": "10"}
            ) as response:
                events = await response.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                waiter = self._waiting.get(event.get("transaction", ""))
                if waiter is not None and not waiter.done() and event.get("janus") == "event":
                    data = event.get("plugindata", {}).get("data", {})
                    if "error" in data:
                        waiter.set_exception(RuntimeError(f"videoroom: {data['error']}"))
                    else:
                        waiter.set_result(event)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except (asyncio.CancelledError, aiohttp.ClientError):
                pass
        try:
            await self._post(
                f"/{self.session_id}", {"janus": "destroy", "transaction": self._transaction()}
            )
        except (aiohttp.ClientError, RuntimeError):
            pass


def _jsep(pc_description: Any) -> dict[str, Any]:
    return {"type": pc_description.type, "sdp": pc_description.sdp, "trickle": False}


#: The name mangling of RTCRtpReceiver.__remote_streams (per SSRC: aiortc's StreamStatistics).
RECEIVER_STREAMS_ATTR = "_RTCRtpReceiver__remote_streams"


def _received_packets(peer: ClientPeer) -> int:
    """RTP packets the peer's receivers have taken in (audio and video): the counters aiortc's
    `getStats` reports as packetsReceived, read at once (getStats awaits, and the sample's time
    and frame counts would drift from its packets on a busy machine)."""
    return sum(
        stream.packets_received
        for transceiver in peer.pc.getTransceivers()
        for stream in getattr(transceiver.receiver, RECEIVER_STREAMS_ATTR, {}).values()
    )


async def janus_bot(
    url: str, room: int, name: str, seconds: float, media_file: Path, ice_host: str
) -> None:
    """One participant of a Janus VideoRoom: publish the encoded loop, subscribe to the other
    publishers once the room has three; print counters as JSON lines until `seconds` pass."""
    media = pickle.loads(await asyncio.to_thread(media_file.read_bytes))
    assert isinstance(media, EncodedMedia)
    publisher = ClientPeer(
        ice_hosts=[ice_host], decode=False, send_encoded=True, encoded=media, stamped=True
    )
    subscriber = ClientPeer(ice_hosts=[ice_host], decode=False, send=())
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        janus = JanusSession(http, url)
        await janus.create()
        try:
            pub = await janus.attach()
            joined = await janus.message(
                pub, {"request": "join", "ptype": "publisher", "room": room, "display": name}
            )
            me = joined["plugindata"]["data"]["id"]
            offer = await publisher.create_offer()
            answer = await janus.message(
                pub,
                {"request": "configure", "audio": True, "video": True},
                {"type": "offer", "sdp": offer, "trickle": False},
            )
            await publisher.apply_answer(answer["jsep"]["sdp"])
            sub = await janus.attach()
            while True:
                listed = await janus.request(pub, {"request": "listparticipants", "room": room})
                feeds = [
                    p["id"] for p in listed["participants"] if p["id"] != me and p.get("publisher")
                ]
                if len(feeds) >= len(ROLES) - 1:
                    break
                await asyncio.sleep(0.2)
            attached = await janus.message(
                sub,
                {
                    "request": "join",
                    "ptype": "subscriber",
                    "room": room,
                    "streams": [{"feed": feed} for feed in feeds],
                },
            )
            for stream in attached["plugindata"]["data"]["streams"]:
                if stream.get("feed_display"):
                    subscriber.track_map[stream["mid"]] = {"participant": stream["feed_display"]}
            pc = subscriber.pc
            await pc.setRemoteDescription(
                RTCSessionDescription(attached["jsep"]["sdp"], attached["jsep"]["type"])
            )
            restrict_host_candidates(pc, [ice_host])
            route_rtx_for(pc)
            await pc.setLocalDescription(await pc.createAnswer())
            await janus.message(sub, {"request": "start"}, _jsep(pc.localDescription))
            await print_counts(
                lambda: subscriber,
                lambda: {r.participant: r.video_frames for r in subscriber.remotes.values()},
                started + seconds,
            )
        finally:
            await janus.close()
            await publisher.close()
            await subscriber.close()


async def print_counts(
    peer: Callable[[], ClientPeer | None],
    video_frames: Callable[[], dict[str, int]],
    until: float,
) -> None:
    """Every SAMPLE_SECONDS until `until` (monotonic), a line of JSON: the wall time, the RTP
    packets received so far and the video frames per remote participant."""
    while (now := time.monotonic()) < until:
        current = peer()
        line = {
            "time": time.time(),
            "packets": _received_packets(current) if current is not None else 0,
            "video_frames": video_frames(),
        }
        print(json.dumps(line), flush=True)
        await asyncio.sleep(SAMPLE_SECONDS - (time.monotonic() - now) % SAMPLE_SECONDS)


async def screenvisit_bot(link: str, seconds: float, media_file: Path) -> None:
    """The light bot of `screenvisit bot --no-decode` (signaling.bot), sending the loop the
    bench encoded, printing the same counters as a Janus bot."""
    media = pickle.loads(await asyncio.to_thread(media_file.read_bytes))
    assert isinstance(media, EncodedMedia)
    bot = Bot(link, BotOptions(seconds=seconds, decode=False, encoded=media))
    running = asyncio.create_task(bot.run())
    try:
        await print_counts(lambda: bot._peer, bot.video_frames, time.monotonic() + seconds)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running


# --- running each server -----------------------------------------------------------------


def janus_config(folder: Path, http_port: int, admin_port: int, ice_host: str) -> Path:
    """A configuration that loads only the HTTP transport (with its admin API, for the packet
    counters) and the VideoRoom plugin."""
    for kind, library in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")):
        (folder / kind).mkdir()
        (folder / kind / library).symlink_to(JANUS_LIB / kind / library)
    (folder / "none").mkdir()
    (folder / "janus.jcfg").write_text(
        "general: {\n"
        f'  configs_folder = "{folder}"\n'
        f'  plugins_folder = "{folder}/plugins"\n'
        f'  transports_folder = "{folder}/transports"\n'
        f'  events_folder = "{folder}/none"\n'
        f'  loggers_folder = "{folder}/none"\n'
        "  debug_level = 3\n"
        f'  admin_secret = "{ADMIN_SECRET}"\n'
        "}\n"
        f'nat: {{\n  ice_enforce_list = "{ice_host}"\n}}\n'
    )
    (folder / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '  json = "compact"\n  base_path = "/janus"\n  http = true\n'
        f'  port = {http_port}\n  ip = "{LOOPBACK}"\n  https = false\n'
        "}\n"
        "admin: {\n"
        '  admin_base_path = "/admin"\n  admin_http = true\n'
        f'  admin_port = {admin_port}\n  admin_ip = "{LOOPBACK}"\n  admin_https = false\n'
        "}\n"
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return folder / "janus.jcfg"


class BotLines:
    """The counters a Janus bot prints, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.samples: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                self.samples.append(json.loads(line))
            except json.JSONDecodeError:
                continue

    def latest(self) -> dict[str, Any] | None:
        return self.samples[-1] if self.samples else None

    def receiving(self) -> bool:
        latest = self.latest()
        frames = latest["video_frames"] if latest else {}
        return len(frames) >= len(ROLES) - 1 and all(n > 0 for n in frames.values())

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader


def _sample_at(samples: list[dict[str, Any]], at: float) -> dict[str, Any]:
    """The sample nearest in time to `at`."""
    return min(samples, key=lambda s: abs(s["time"] - at))


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


async def _measure(pid: int, window: float) -> tuple[float, float, float, float]:
    """(t0, t1, server CPU-s/s, machine busy fraction) over `window` seconds from now."""
    cpu0, (idle0, total0), t0 = process_cpu(pid), machine_idle(), time.time()
    await asyncio.sleep(window)
    cpu1, (idle1, total1), t1 = process_cpu(pid), machine_idle(), time.time()
    busy = 1.0 - (idle1 - idle0) / max(total1 - total0, 1e-9)
    return t0, t1, (cpu1 - cpu0) / (t1 - t0), busy


def _bot_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.vs_janus", *args]


async def _load_and_measure(
    result: Run,
    server_pid: int,
    commands: list[list[str]],
    window: float,
    server_count: Callable[[], Awaitable[float]] | None = None,
) -> None:
    """Start the bots, wait until each receives video from both others, settle, then measure
    the server's CPU and the packets the bots received over `window` seconds; `server_count`,
    when given, is the server's own count of packets forwarded, measured over the same window."""
    debug = bool(os.environ.get("BENCH_DEBUG"))
    bots: list[BotLines] = []
    try:
        for command in commands:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=None if debug else asyncio.subprocess.DEVNULL,
            )
            bots.append(BotLines(process))

        async def everyone() -> bool:
            if any(b.process.returncode is not None for b in bots):
                raise RuntimeError("a bot exited before the window")
            return all(b.receiving() for b in bots)

        timeout = STEADY_TIMEOUT_SECONDS + STEADY_TIMEOUT_PER_ROOM_SECONDS * result.rooms
        try:
            await _until(everyone, timeout, f"video to all {len(bots)} participants")
        except RuntimeError as exc:
            seen = [(b.latest() or {}).get("video_frames") for b in bots]
            raise RuntimeError(f"{exc}; video frames per bot: {seen}") from None
        await asyncio.sleep(SETTLE_SECONDS)
        before = await server_count() if server_count is not None else 0.0
        t0, t1, result.server_cpu, result.machine_busy = await _measure(server_pid, window)
        after = await server_count() if server_count is not None else 0.0
        result.server_packets_per_second = (after - before) / (t1 - t0)
        await asyncio.sleep(2 * SAMPLE_SECONDS)
        for bot in bots:
            first, last = _sample_at(bot.samples, t0), _sample_at(bot.samples, t1)
            span = last["time"] - first["time"]
            result.packets_per_second += (last["packets"] - first["packets"]) / span
            for remote, frames in last["video_frames"].items():
                result.fps.append((frames - first["video_frames"].get(remote, 0)) / span)
        result.window_seconds = t1 - t0
    finally:
        for bot in bots:
            await bot.close()


async def until_signal(work: Coroutine[Any, Any, None]) -> None:
    """Run `work`; SIGTERM or SIGINT cancel it, so that it still stops the servers it started."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def niced(command: list[str], nice: int) -> list[str]:
    """`command` at niceness `nice` (all its threads: they inherit it), or as it is for 0."""
    return ["nice", "-n", str(nice), *command] if nice else command


def screenvisit_env(folder: Path, **settings: str) -> dict[str, str]:
    """The environment of a screenvisit server (and its CLI) on loopback, data in `folder`."""
    return {
        **os.environ,
        "SCREENVISIT_DATA_DIR": str(folder / "data"),
        "SCREENVISIT_PORT": str(free_port()),
        "SCREENVISIT_HOST": LOOPBACK,
        "SCREENVISIT_ICE_HOSTS": LOOPBACK,
        "SCREENVISIT_LOG_LEVEL": "warning",
        **settings,
    }


async def stop_server(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), timeout=30)
        except TimeoutError:
            server.kill()
            await server.wait()


def _bot_seconds(rooms: int, window: float) -> float:
    """Long enough for any run: the bench ends the bots once it has measured."""
    return STEADY_TIMEOUT_SECONDS + STEADY_TIMEOUT_PER_ROOM_SECONDS * rooms + window + 30


async def run_janus(rooms: int, window: float, loops: list[Path], nice: int) -> Run:
    result = Run("janus", rooms)
    with tempfile.TemporaryDirectory(prefix="bench-janus-") as tmp:
        port, admin_port = free_port(), free_port()
        ice_host = local_address()
        config = janus_config(Path(tmp), port, admin_port, ice_host)
        url = f"http://{LOOPBACK}:{port}/janus"
        server = await asyncio.create_subprocess_exec(
            *niced(["janus", "-C", str(config), "-F", tmp, "--disable-colors"], nice),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with aiohttp.ClientSession() as http:

                async def up() -> bool:
                    try:
                        async with http.get(f"{url}/info") as response:
                            return response.status == 200
                    except aiohttp.ClientError:
                        return False

                await _until(up, 20, "janus to listen")
                admin = JanusSession(http, url)
                await admin.create()
                handle = await admin.attach()
                for room in range(1, rooms + 1):
                    await admin.request(
                        handle,
                        {
                            "request": "create",
                            "room": room,
                            "publishers": len(ROLES),
                            "videocodec": "vp8",
                            "audiocodec": "opus",
                            "bitrate": 0,
                        },
                    )
                await admin.close()
            seconds = str(_bot_seconds(rooms, window))
            commands = [
                _bot_command(
                    *("--janus-bot", url, "--room", str(room), "--name", f"{role}-{room}"),
                    *("--seconds", seconds, "--media", str(loops[index]), "--ice-host", ice_host),
                )
                for room in range(1, rooms + 1)
                for index, role in enumerate(ROLES)
            ]
            async with aiohttp.ClientSession() as http:
                admin_url = f"http://{LOOPBACK}:{admin_port}/admin"
                await _load_and_measure(
                    result,
                    server.pid,
                    commands,
                    window,
                    lambda: janus_forwarded(http, admin_url),
                )
        finally:
            await stop_server(server)
    return result


async def _admin(http: aiohttp.ClientSession, url: str, **request: Any) -> dict[str, Any]:
    body = {**request, "transaction": "bench", "admin_secret": ADMIN_SECRET}
    async with http.post(url, json=body) as response:
        reply: dict[str, Any] = await response.json(content_type=None)
    if reply.get("janus") != "success":
        raise RuntimeError(f"janus admin: {reply}")
    return reply


async def janus_forwarded(http: aiohttp.ClientSession, url: str) -> float:
    """RTP packets Janus has sent on all its handles' media (its admin API's `handle_info`,
    webrtc.media[*].stats.out.packets): to subscribers, as only they receive media here."""
    total = 0
    for session in (await _admin(http, url, janus="list_sessions"))["sessions"]:
        handles = await _admin(http, url, janus="list_handles", session_id=session)
        for handle in handles.get("handles", []):
            info = await _admin(
                http, url, janus="handle_info", session_id=session, handle_id=handle
            )
            media = info["info"].get("webrtc", {}).get("media", {})
            total += sum(
                m.get("stats", {}).get("out", {}).get("packets", 0) for m in media.values()
            )
    return float(total)


FORWARDED = re.compile(r"^screenvisit_forwarded_packets_total(?:\{[^}]*\})? (\S+)$", re.M)


async def run_screenvisit(rooms: int, window: float, loops: list[Path], nice: int) -> Run:
    result = Run("screenvisit", rooms)
    with tempfile.TemporaryDirectory(prefix="bench-sv-") as tmp:
        metrics_port = free_port()
        env = screenvisit_env(
            Path(tmp),
            SCREENVISIT_METRICS_PORT=str(metrics_port),
            SCREENVISIT_METRICS_HOST=LOOPBACK,
        )
        server = await asyncio.create_subprocess_exec(
            *niced(_cli("serve", "--no-demo"), nice),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert server.stdout is not None
            line = await asyncio.wait_for(server.stdout.readline(), timeout=START_TIMEOUT_SECONDS)
            if b"listening on" not in line:
                raise RuntimeError(f"screenvisit did not start: {line!r}")
            visits = await asyncio.gather(*(_create_visit(env, None) for _ in range(rooms)))
            seconds = str(_bot_seconds(rooms, window))
            commands = [
                _bot_command(
                    *("--screenvisit-bot", visit["links"][role]),
                    *("--seconds", seconds, "--media", str(loops[index])),
                )
                for visit in visits
                for index, role in enumerate(ROLES)
            ]
            metrics = f"http://{LOOPBACK}:{metrics_port}/metrics"
            async with aiohttp.ClientSession() as http:

                async def forwarded() -> float:
                    async with http.get(metrics) as response:
                        match = FORWARDED.search(await response.text())
                    if match is None:
                        raise RuntimeError("no screenvisit_forwarded_packets_total on /metrics")
                    return float(match.group(1))

                await _load_and_measure(result, server.pid, commands, window, forwarded)
        finally:
            await stop_server(server)
    return result


async def run_one(server: str, rooms: int, window: float, loops: list[Path], nice: int) -> Run:
    print(f"  {server} ...", flush=True)
    try:
        if server == "janus":
            return await run_janus(rooms, window, loops, nice)
        return await run_screenvisit(rooms, window, loops, nice)
    except Exception as exc:  # a bench run reports every failure and goes on
        print(f"  {server} failed: {exc!r}", flush=True)
        return Run(server, rooms, failure=repr(exc))


def line(run: Run) -> str:
    if run.failure is not None:
        return f"{run.server:12s} failed: {run.failure}"
    fps = f"{statistics.median(run.fps):5.1f} / {min(run.fps):5.1f}" if run.fps else "n/a"
    return (
        f"{run.server:12s} {run.server_cpu:8.3f} {run.server_packets_per_second:8.0f} "
        f"{run.packets_per_second:8.0f} {run.us_per_packet:10.1f} {fps:>13s} "
        f"{100 * run.machine_busy:8.0f}%"
    )


HEADER = (
    f"{'server':12s} {'CPU s/s':>8s} {'sent/s':>8s} {'recv/s':>8s} {'µs/packet':>10s} "
    f"{'fps med/min':>13s} {'machine':>9s}"
)


async def main(args: argparse.Namespace) -> None:
    print(
        f"screenvisit vs Janus VideoRoom: {args.rooms} three-way room(s) of light bots "
        f"(640x480@30 VP8 ~1.2 Mbps + Opus), {args.window:.0f} s window, {args.pairs} pair(s), "
        f"loopback, {psutil.cpu_count()} cores shared by server, bots and this script; servers "
        f"at niceness {args.nice}"
    )
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-loops-") as tmp:
        loops = []
        for index in range(len(ROLES)):
            # The Janus bots' loops, encoded once here (the screenvisit bots encode their own).
            media = await asyncio.to_thread(EncodedMedia.build, 640, 480, 30, 80 * index)
            loops.append(Path(tmp) / f"loop{index}.pickle")
            loops[-1].write_bytes(pickle.dumps(media))
        for pair in range(args.pairs):
            ratio = await run_pair(pair, args, loops)
            if ratio is not None:
                ratios.append(ratio)
    if ratios:
        print(
            f"screenvisit / Janus server CPU per forwarded packet: median "
            f"{statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f} "
            f"over {len(ratios)} pair(s)"
        )
    else:
        print("no pair completed: no ratio")


async def run_pair(pair: int, args: argparse.Namespace, loops: list[Path]) -> float | None:
    """One run of each server, the order alternating by pair; their ratio when both ran."""
    order = SERVERS if pair % 2 == 0 else tuple(reversed(SERVERS))
    print(f"pair {pair + 1}:", flush=True)
    runs = {s: await run_one(s, args.rooms, args.window, loops, args.nice) for s in order}
    print("  " + HEADER)
    for server in order:
        print("  " + line(runs[server]))
    sv, janus = runs["screenvisit"], runs["janus"]
    if sv.failure is None and janus.failure is None:
        ratio = sv.us_per_packet / janus.us_per_packet
        print(f"  screenvisit / Janus CPU per forwarded packet: {ratio:.2f}", flush=True)
        return ratio
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs (default 3)")
    parser.add_argument("--rooms", type=int, default=2, help="three-way rooms (default 2)")
    parser.add_argument(
        "--window", type=float, default=10.0, help="seconds measured per run (default 10)"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=DEFAULT_NICE,
        help="niceness of both servers (default -10 as root, else 0): on a shared machine a"
        " raised priority keeps other load from starving either server; 0 for none",
    )
    # A Janus participant, run by the bench in its own process.
    parser.add_argument("--janus-bot", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--screenvisit-bot", metavar="LINK", help=argparse.SUPPRESS)
    parser.add_argument("--room", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="bot", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--media", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ice-host", default=LOOPBACK, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.janus_bot:
        asyncio.run(
            janus_bot(
                arguments.janus_bot,
                arguments.room,
                arguments.name,
                arguments.seconds,
                arguments.media,
                arguments.ice_host,
            )
        )
    elif arguments.screenvisit_bot:
        asyncio.run(screenvisit_bot(arguments.screenvisit_bot, arguments.seconds, arguments.media))
    else:
        asyncio.run(until_signal(main(arguments)))
