"""The client side of a media session, as a browser would run it, for headless participants.

It publishes synthetic audio and video, offers (it always offers, like the browser), and counts
what it receives per remote participant using the server's mid -> participant map.

By default it decodes what it receives and encodes what it sends, frame by frame, like a browser.
A light participant (load tests) has `decode=False`, counting complete encoded frames taken from
the receiver before any decoder sees them, and `send_encoded=True`, replaying a loop encoded once
(`media.encoded`), so that many of them in one process measure the server rather than themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from media.codecs import codec_preferences
from media.config import IceServer
from media.directreceive import RECEIVER_CODECS
from media.encoded import EncodedAudioLoop, EncodedMedia, EncodedVideoLoop, vp8_keyframe_size
from media.ice import restrict_host_candidates
from media.reassembly import VideoFrames, replace_jitter_buffer
from media.remb import throttle_remb
from media.rtx import route_rtx_for
from media.stamp import read_stamp
from media.synthetic import SyntheticAudioTrack, SyntheticVideoTrack
from media.tap import DECODER_QUEUE_ATTR, FrameSink, install_tap
from media.tasks import OwnedTasks

#: What the decoder thread needs to know of the codec of the frames we queue for it.
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000)
#: Latency samples kept per remote participant: two minutes of video at 30 fps.
LATENCY_SAMPLES = 3600


@dataclass
class RemoteStats:
    participant: str
    video_frames: int = 0
    audio_frames: int = 0
    width: int = 0
    height: int = 0
    first_frame_seconds: float | None = None
    #: Seconds from start to the first audio frame (for rates; not part of the decoded contract).
    first_audio_seconds: float | None = None
    #: RTP timestamp (48 kHz, from the receiver's zero) of the latest audio frame: how far the
    #: audio timeline has come, whatever the delay, so a count over it gives frames per second.
    audio_timestamp: int | None = None
    #: End-to-end latency (ms) of the latest stamped video frames (`media.stamp`), oldest first.
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


class ClientPeer:
    def __init__(
        self,
        ice_servers: Sequence[IceServer] = (),
        ice_hosts: Sequence[str] = (),
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        hue: int = 0,
        started: float | None = None,
        decode: bool = True,
        send_encoded: bool = False,
        encoded: EncodedMedia | None = None,
        stamped: bool = False,
        send: Sequence[str] = ("audio", "video"),
        video_codecs: Sequence[str] | None = None,
    ) -> None:
        """`decode=False` counts encoded frames instead of decoding them; `send_encoded=True`
        publishes `encoded` (built here, once, when not given) instead of encoding per frame;
        `stamped` (with `send_encoded`) stamps the frames sent with their sending time
        (`media.stamp`). Stamped frames received are timed whatever the setting. `send` names
        the kinds published (none: a receive-only participant, as a browser whose camera and
        microphone were refused); `video_codecs` (mime types, say `("video/H264",)`) is all the
        video it offers, to send and to receive, as an iPhone's Safari may."""
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(list(s.urls), s.username, s.credential) for s in ice_servers
                ],
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        self._ice_hosts = tuple(ice_hosts)
        self._tasks = OwnedTasks("client peer")
        self._started = time.monotonic() if started is None else started
        self.track_map: dict[str, dict[str, str] | None] = {}
        self.remotes: dict[str, RemoteStats] = {}
        self._consumed: set[str] = set()
        self._waiters: list[
            tuple[Callable[[dict[str, RemoteStats]], bool], asyncio.Future[None]]
        ] = []
        self.decode = decode
        tracks: tuple[MediaStreamTrack, MediaStreamTrack]
        if send_encoded:
            media = encoded or EncodedMedia.build(width, height, fps, hue)
            tracks = (EncodedAudioLoop(media.audio), EncodedVideoLoop(media.video, stamped))
        else:
            tracks = (SyntheticAudioTrack(), SyntheticVideoTrack(width, height, fps, hue))
        self._video_codecs = tuple(video_codecs) if video_codecs else None
        self.sends = tuple(kind for kind in ("audio", "video") if kind in send)
        for track in tracks:
            if track.kind not in self.sends:
                continue
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(self._preferences(track.kind))
        self.pc.on("track", self._on_track)
        #: Extra video it publishes (media.sources: "screen", "camera2") and their transceivers.
        self._extra: dict[str, RTCRtpTransceiver] = {}
        self._size = (width, height, fps)

    def add_source(self, source: str, hue: int = 0, width: int | None = None) -> None:
        """Publish (or resume) a synthetic video track as `source`, say a shared "screen";
        the next offer announces it (`sources`)."""
        transceiver = self._extra.get(source)
        if transceiver is not None:
            transceiver.direction = "sendonly"
            return
        w, h, fps = self._size
        track = SyntheticVideoTrack(width or w, (width or w) * h // w, fps, hue)
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(self._preferences("video"))
        self._extra[source] = transceiver

    def stop_source(self, source: str) -> None:
        """Stop sending `source` (the m-line goes inactive at the next offer)."""
        self._extra[source].direction = "inactive"

    @property
    def sources(self) -> dict[str, str]:
        """mid -> source of the extra tracks, for the offer (known once an offer was made)."""
        return {t.mid: source for source, t in self._extra.items() if t.mid is not None}

    def _preferences(self, kind: str) -> list[RTCRtpCodecCapability]:
        if kind == "video" and self._video_codecs is not None:
            return codec_preferences(kind, self._video_codecs)
        return codec_preferences(kind)

    def ensure_recv_slots(self, recv: dict[str, int]) -> None:
        """At least `recv[kind]` receive-only transceivers; and one of each kind whatever the
        count when nothing is sent, so that the offer is never empty (an empty one cannot be
        answered)."""
        for kind in ("audio", "video"):
            wanted = max(recv.get(kind, 0), 0 if self.sends else 1)
            have = sum(1 for t in self._recv_transceivers() if t.kind == kind)
            for _ in range(wanted - have):
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                transceiver.setCodecPreferences(self._preferences(kind))

    def _recv_transceivers(self) -> list[RTCRtpTransceiver]:
        return [t for t in self.pc.getTransceivers() if t.direction == "recvonly"]

    async def create_offer(self) -> str:
        offer = await self.pc.createOffer()
        restrict_host_candidates(self.pc, self._ice_hosts)
        await self.pc.setLocalDescription(offer)
        return self.pc.localDescription.sdp

    async def apply_answer(self, sdp: str) -> None:
        # Several receivers share the bundled transport: aiortc alone would drop their RTX.
        route_rtx_for(self.pc)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if (
                transceiver.receiver.track is track
                and mid is not None
                and mid not in self._consumed
            ):
                self._consumed.add(mid)
                receiver = transceiver.receiver
                sink = self._encoded_sink(mid, track.kind)
                if self.decode:
                    self._tasks.spawn(self._consume(mid, track))
                else:
                    # The receiver has not started yet (track events precede the connection), so
                    # its decoder thread will wait on the tap and never see a frame.
                    install_tap(receiver, sink)
                if track.kind == "video":
                    self._reassemble_video(receiver, sink)
                    throttle_remb(receiver)

    def _reassemble_video(self, receiver: RTCRtpReceiver, sink: FrameSink) -> None:
        """Video frames as a browser gets them: none held back behind a recovered loss, and
        what is still missing asked for again (see media.reassembly). Each frame goes on with
        the codec its packets' payload type names (VP8 or H264, whichever the publisher sends)."""
        codecs: dict[int, RTCRtpCodecParameters] = getattr(receiver, RECEIVER_CODECS)
        frames: VideoFrames | None = None

        def codec() -> RTCRtpCodecParameters:
            payload_type = frames.payload_type if frames is not None else None
            return codecs.get(payload_type, VP8) if payload_type is not None else VP8

        if self.decode:
            decoder_queue = getattr(receiver, DECODER_QUEUE_ATTR)

            def deliver(frame: JitterFrame) -> None:
                decoder_queue.put((codec(), frame))
        else:

            def deliver(frame: JitterFrame) -> None:
                sink(codec(), frame)

        def nack(media_ssrc: int, lost: list[int]) -> None:
            self._tasks.spawn(receiver._send_rtcp_nack(media_ssrc, lost))

        installed = replace_jitter_buffer(receiver, "video", deliver, nack)
        assert isinstance(installed, VideoFrames)
        frames = installed

    def _stats_for(self, mid: str, kind: str) -> RemoteStats | None:
        entry = self.track_map.get(mid)
        if entry is None:
            return None
        # A shared screen or second camera is counted apart: "gp:screen".
        source = entry.get("source", "camera")
        key = entry["participant"]
        if source not in ("camera", "microphone"):
            key = f"{key}:{source}"
        stats = self.remotes.setdefault(key, RemoteStats(key))
        if stats.first_frame_seconds is None and kind == "video":
            stats.first_frame_seconds = time.monotonic() - self._started
        if stats.first_audio_seconds is None and kind == "audio":
            stats.first_audio_seconds = time.monotonic() - self._started
        return stats

    def _encoded_sink(self, mid: str, kind: str) -> Callable[[Any, Any], None]:
        def sink(codec: Any, jitter_frame: Any) -> None:
            stats = self._stats_for(mid, kind)
            if stats is None:
                return
            if kind == "video":
                stats.video_frames += 1
                sent_ns = read_stamp(jitter_frame.data)
                if sent_ns is not None:
                    stats.latencies_ms.append((time.time_ns() - sent_ns) / 1e6)
                size = vp8_keyframe_size(bytes(jitter_frame.data[:10]))
                if size is not None:
                    stats.width, stats.height = size
            else:
                stats.audio_frames += 1
                stats.audio_timestamp = jitter_frame.timestamp
            self._notify()

        return sink

    async def _consume(self, mid: str, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                stats = self._stats_for(mid, track.kind)
                if stats is None:
                    continue
                if isinstance(frame, av.VideoFrame):
                    stats.video_frames += 1
                    stats.width, stats.height = frame.width, frame.height
                else:
                    stats.audio_frames += 1
                    stats.audio_timestamp = frame.pts
                self._notify()
        except MediaStreamError:
            return

    def _notify(self) -> None:
        """Wake every `wait_until` whose predicate now holds (synchronous: the tap calls it)."""
        for predicate, waiter in self._waiters:
            if waiter.done():
                continue
            try:
                if predicate(self.remotes):
                    waiter.set_result(None)
            except Exception as exc:
                waiter.set_exception(exc)

    async def wait_until(
        self, predicate: Callable[[dict[str, RemoteStats]], bool], timeout: float
    ) -> None:
        """Wait until `predicate(remotes)` holds, re-checked as each frame arrives."""
        async with asyncio.timeout(timeout):
            if predicate(self.remotes):
                return
            entry = (predicate, asyncio.get_running_loop().create_future())
            self._waiters.append(entry)
            try:
                await entry[1]
            finally:
                self._waiters.remove(entry)

    async def close(self) -> None:
        await self._tasks.aclose()
        await asyncio.shield(self.pc.close())
