"""A publisher on an impaired link: freezes, repeated NACKs and recovered packets.

    python3 -m bench.impaired_link [--seconds 30] [--loss 3] [--rtt 80] [--pairs 2]

The kernel here has no netem, so the impairment is in user space, on the publisher's own ICE
socket (below SRTP, as `tests/support/links.py` does): each datagram it sends or receives is
lost with probability `--loss` percent, and the rest are delayed by half of `--rtt` each way.

Per run, a real server (`screenvisit serve`, its own process, loopback) hosts one visit; two
light bots (`signaling.bot`, in this process, sending the pre-encoded VP8 640x480@30 loop and
Opus) join it: the GP, whose link is impaired, and the nurse, on a clean link. Measured over the
call, from the nurse's first frame of the GP:

- freezes: gaps of more than FREEZE_MS between the GP's video frames completed at the nurse, and
  the time spent frozen;
- the server's NACKs, as the GP receives them (per sequence number): requests, repeats, repeats
  within one nominal round trip (`--rtt`) of the previous request for the same packet, and
  wasted repeats (a packet asked for again though its retransmission had already reached the
  server when the request left it);
- recovered packets: video packets the link lost on the way up whose retransmission (RTX) did
  get through, against all it lost;
- ramp-up: from the nurse's first frame of the GP to the first second at full rate (27 fps)
  of the GP's video at the nurse, counted from its first frame.

Three servers per pair, interleaved: `clean` (the current code, no impairment: what the busy
machine alone does to frame timing), `rtt` (the current code: a NACK is repeated no sooner than
one measured round trip, `media.reassembly.NackRetries` with `media.rtt.peer_rtt`) and `fixed`
(the same code with the measured round trip hidden, `media.peer.peer_rtt` replaced in the server
process by one that measures nothing: NACKs are repeated every DEFAULT_RTT_SECONDS, 0.1 s, as
before the RTT-aware change). Media code is not changed for the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, is_rtcp

from bench.media_forwarding import _cli, _create_visit
from bench.vs_janus import DEFAULT_NICE, niced, screenvisit_env, stop_server, until_signal
from media.client import ClientPeer
from media.encoded import EncodedMedia
from signaling.bot import Bot, BotOptions

#: A server's start-up (imports, migrations) on a busy shared machine.
START_TIMEOUT_SECONDS = 120.0
MODES = ("clean", "rtt", "fixed")
FREEZE_MS = 300.0
FULL_RATE_FPS = 27.0
#: The server process of the `fixed` baseline: the current server, its peers' RTT unmeasured.
FIXED_RETRY_SERVER = (
    "import sys, media.peer; media.peer.peer_rtt = lambda pc: None; "
    "from server.cli import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass
class LinkRecord:
    """What crossed the impaired link, and what the GP's sender did about it."""

    lost_up: set[int] = field(default_factory=set)
    #: Lost on the way up and retransmitted through the link: sequence number -> when.
    recovered: dict[int, float] = field(default_factory=dict)
    datagrams: int = 0
    dropped: int = 0
    #: Sequence number -> arrival times at the GP of the NACKs naming it.
    nacks: dict[int, list[float]] = field(default_factory=dict)


class ImpairedLink:
    """Loss and delay, both ways, on the nominated ICE pair of a peer connection."""

    def __init__(
        self, pc: Any, loss: float, delay: float, record: LinkRecord, rng: random.Random
    ) -> None:
        video = next(t.sender for t in pc.getTransceivers() if t.kind == "video")
        self._video_ssrc = video._ssrc
        self._rtx_ssrc = video._rtx_ssrc
        pair = video.transport.transport._connection._nominated[1]
        self._protocol = pair.protocol
        self._socket = pair.protocol.transport
        self._receive = pair.protocol.datagram_received
        self._loop = asyncio.get_running_loop()
        self._loss, self._delay, self._record, self._rng = loss, delay, record, rng
        #: The sequence number the GP's sender is retransmitting right now, if any.
        self.retransmitting: int | None = None
        self._protocol.transport = self
        self._protocol.datagram_received = self._received
        self._watch(video)

    def _watch(self, sender: Any) -> None:
        handle, retransmit = sender._handle_rtcp_packet, sender._retransmit
        record = self._record

        async def handle_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                now = time.monotonic()
                for sequence in packet.lost:
                    record.nacks.setdefault(sequence, []).append(now)
            await handle(packet)

        async def retransmitting(sequence: int) -> None:
            self.retransmitting = sequence
            try:
                await retransmit(sequence)
            finally:
                self.retransmitting = None

        sender._handle_rtcp_packet = handle_rtcp
        sender._retransmit = retransmitting

    def _lost(self) -> bool:
        self._record.datagrams += 1
        if self._rng.random() * 100 < self._loss:
            self._record.dropped += 1
            return True
        return False

    def sendto(self, data: bytes, address: Any = None) -> None:
        lost = self._lost()
        if len(data) >= 12 and not is_rtcp(data) and 128 <= data[0] < 192:
            ssrc = int.from_bytes(data[8:12], "big")
            if ssrc == self._video_ssrc and lost:
                self._record.lost_up.add(int.from_bytes(data[2:4], "big"))
            elif ssrc == self._rtx_ssrc and not lost and self.retransmitting is not None:
                self._record.recovered.setdefault(self.retransmitting, time.monotonic())
        if not lost:
            self._loop.call_later(self._delay, self._send_now, data, address)

    def _send_now(self, data: bytes, address: Any) -> None:
        if not self._socket.is_closing():  # the call may have ended meanwhile
            self._socket.sendto(data, address)

    def _received(self, data: bytes, address: Any) -> None:
        if not self._lost():
            self._loop.call_later(self._delay, self._receive_now, data, address)

    def _receive_now(self, data: bytes, address: Any) -> None:
        if not self._socket.is_closing():
            self._receive(data, address)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)


@dataclass
class Result:
    mode: str
    #: The GP's video at the nurse: the window, its frames, and the gaps over FREEZE_MS.
    seconds: float = 0.0
    frames: int = 0
    freezes: int = 0
    frozen_seconds: float = 0.0
    longest_gap_ms: float = 0.0
    #: From the first frame to the first second at full rate.
    ramp_up_seconds: float = float("nan")
    #: The GP's video packets the link lost on the way up, and those whose RTX got through.
    lost_up: int = 0
    recovered: int = 0
    #: Sequence numbers named in the NACKs the GP received, and how many were asked again.
    nack_requests: int = 0
    repeats: int = 0
    repeats_within_rtt: int = 0
    wasted_repeats: int = 0
    #: Of all datagrams through the link, both ways.
    dropped_percent: float = 0.0
    failure: str | None = None


def frame_times(peer: ClientPeer, participant: str, into: list[float]) -> None:
    """Record the time of each of `participant`'s video frames completed at `peer`."""
    notify = peer._notify
    seen = 0

    def counting() -> None:
        nonlocal seen
        stats = peer.remotes.get(participant)
        if stats is not None and stats.video_frames != seen:
            seen = stats.video_frames
            into.append(time.monotonic())
        notify()

    peer._notify = counting  # type: ignore[method-assign]


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def run(mode: str, args: argparse.Namespace, media: list[EncodedMedia], seed: int) -> Result:
    result = Result(mode)
    record = LinkRecord()
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix=f"bench-impaired-{mode}-") as tmp:
        env = screenvisit_env(Path(tmp))
        command = (
            [sys.executable, "-c", FIXED_RETRY_SERVER, "serve", "--no-demo"]
            if mode == "fixed"
            else _cli("serve", "--no-demo")
        )
        server = await asyncio.create_subprocess_exec(
            *niced(command, args.nice),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        bots: list[asyncio.Task[Any]] = []
        try:
            assert server.stdout is not None
            line = await asyncio.wait_for(server.stdout.readline(), timeout=START_TIMEOUT_SECONDS)
            if b"listening on" not in line:
                raise RuntimeError(f"the server did not start: {line!r}")
            visit = await _create_visit(env, None)
            gp = Bot(
                visit["links"]["gp"],
                BotOptions(seconds=args.seconds + 15, decode=False, encoded=media[0]),
            )
            nurse = Bot(
                visit["links"]["nurse"],
                BotOptions(seconds=args.seconds + 15, decode=False, encoded=media[1]),
            )
            bots = [asyncio.create_task(gp.run()), asyncio.create_task(nurse.run())]
            await _until(lambda: gp._peer is not None and nurse._peer is not None, 30, "peers")
            assert gp._peer is not None and nurse._peer is not None
            frame_times(nurse._peer, gp.report.participant, times)
            pc = gp._peer.pc
            await _until(lambda: pc.iceConnectionState == "completed", 30, "the GP's ICE")
            if mode != "clean":
                ImpairedLink(pc, args.loss, args.rtt / 2000, record, random.Random(seed))
            await _until(lambda: bool(times), 30, "the GP's video at the nurse")
            start = times[0]
            await asyncio.sleep(args.seconds)
            end = time.monotonic()
        finally:
            for task in bots:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await stop_server(server)
    frames = [t for t in times if start <= t <= end]
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    result.seconds = end - start
    result.frames = len(frames)
    result.freezes = sum(1 for g in gaps if g * 1000 > FREEZE_MS)
    result.frozen_seconds = sum(g for g in gaps if g * 1000 > FREEZE_MS)
    result.longest_gap_ms = 1000 * max(gaps, default=0.0)
    for index, at in enumerate(frames):
        later = [t for t in frames[index:] if t < at + 1.0]
        if len(later) >= FULL_RATE_FPS:
            result.ramp_up_seconds = at - start
            break
    rtt = args.rtt / 1000
    result.lost_up = len(record.lost_up)
    result.recovered = len(record.recovered.keys() & record.lost_up)
    result.dropped_percent = 100 * record.dropped / max(record.datagrams, 1)
    for sequence, arrivals in record.nacks.items():
        result.nack_requests += len(arrivals)
        result.repeats += len(arrivals) - 1
        result.repeats_within_rtt += sum(1 for a, b in itertools.pairwise(arrivals) if b - a < rtt)
        recovered_at = record.recovered.get(sequence)
        if recovered_at is not None:
            # Asked for again though its retransmission had reached the server before the
            # request was sent: it crossed the link half a round trip after it left the GP,
            # and the request took the other half.
            result.wasted_repeats += sum(1 for a in arrivals if a >= recovered_at + rtt)
    return result


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"{'mode':6s} {'window s':>8s} {'frames':>6s} {'freezes':>7s} {'frozen s':>8s} "
        f"{'max gap ms':>10s} {'ramp-up s':>9s} {'lost up':>7s} {'recovered':>9s} "
        f"{'NACKed':>6s} {'repeats':>7s} {'<1 RTT':>6s} {'wasted':>6s}"
    )
    for r in results:
        if r.failure is not None:
            print(f"{r.mode:6s} failed: {r.failure}")
            continue
        print(
            f"{r.mode:6s} {r.seconds:8.1f} {r.frames:6d} {r.freezes:7d} {r.frozen_seconds:8.2f} "
            f"{r.longest_gap_ms:10.0f} {r.ramp_up_seconds:9.2f} {r.lost_up:7d} "
            f"{r.recovered:9d} {r.nack_requests:6d} {r.repeats:7d} {r.repeats_within_rtt:6d} "
            f"{r.wasted_repeats:6d}"
        )
    for mode in ("rtt", "fixed"):
        done = [r for r in results if r.mode == mode and r.failure is None]
        if done:
            print(
                f"{mode}: freezes {sum(r.freezes for r in done)} "
                f"({sum(r.frozen_seconds for r in done):.2f} s frozen), "
                f"recovered {sum(r.recovered for r in done)} of {sum(r.lost_up for r in done)} "
                f"lost, repeated NACKs {sum(r.repeats for r in done)} "
                f"({sum(r.repeats_within_rtt for r in done)} within {args.rtt:.0f} ms, "
                f"{sum(r.wasted_repeats for r in done)} after the server had it), "
                f"ramp-up median {statistics.median(r.ramp_up_seconds for r in done):.2f} s"
            )


async def main(args: argparse.Namespace) -> None:
    print(
        f"impaired link: the GP's link loses {args.loss:g} % each way with {args.rtt:.0f} ms "
        f"round trip; {args.seconds:.0f} s of the GP's video at the nurse per run; modes "
        f"{', '.join(MODES)}; {args.pairs} round(s)"
    )
    media = [await asyncio.to_thread(EncodedMedia.build, 640, 480, 30, hue) for hue in (0, 80)]
    results = []
    for round_ in range(args.pairs):
        order = MODES if round_ % 2 == 0 else ("clean", "fixed", "rtt")
        for mode in order:
            print(f"running {mode} ...", flush=True)
            try:
                results.append(await run(mode, args, media, seed=round_))
            except Exception as exc:  # a bench run reports every failure and goes on
                results.append(Result(mode, failure=repr(exc)))
    print_table(results, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured per run")
    parser.add_argument("--loss", type=float, default=3.0, help="percent lost each way")
    parser.add_argument("--rtt", type=float, default=80.0, help="round trip added, ms")
    parser.add_argument("--pairs", type=int, default=2, help="rounds of the three modes")
    parser.add_argument(
        "--nice",
        type=int,
        default=DEFAULT_NICE,
        help="niceness of the server (default -10 as root, else 0; as bench.vs_janus)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(until_signal(main(parse_args())))
