"""The client side of a media session, as a browser would run it, for headless participants.

It publishes synthetic audio and video, offers (it always offers, like the browser), and counts
what it receives per remote participant using the server's mid -> participant map.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.codecs import codec_preferences
from media.config import IceServer
from media.ice import restrict_host_candidates
from media.synthetic import SyntheticAudioTrack, SyntheticVideoTrack
from media.tasks import OwnedTasks


@dataclass
class RemoteStats:
    participant: str
    video_frames: int = 0
    audio_frames: int = 0
    width: int = 0
    height: int = 0
    first_frame_seconds: float | None = None


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
    ) -> None:
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
        self._progress = asyncio.Condition()
        for track in (SyntheticAudioTrack(), SyntheticVideoTrack(width, height, fps, hue)):
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(track.kind))
        self.pc.on("track", self._on_track)

    def ensure_recv_slots(self, recv: dict[str, int]) -> None:
        for kind, wanted in recv.items():
            have = sum(1 for t in self._recv_transceivers() if t.kind == kind)
            for _ in range(wanted - have):
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                transceiver.setCodecPreferences(codec_preferences(kind))

    def _recv_transceivers(self) -> list[RTCRtpTransceiver]:
        return [t for t in self.pc.getTransceivers() if t.direction == "recvonly"]

    async def create_offer(self) -> str:
        offer = await self.pc.createOffer()
        restrict_host_candidates(self.pc, self._ice_hosts)
        await self.pc.setLocalDescription(offer)
        return self.pc.localDescription.sdp

    async def apply_answer(self, sdp: str) -> None:
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
                self._tasks.spawn(self._consume(mid, track))

    async def _consume(self, mid: str, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                entry = self.track_map.get(mid)
                if entry is None:
                    continue
                stats = self.remotes.setdefault(
                    entry["participant"], RemoteStats(entry["participant"])
                )
                if stats.first_frame_seconds is None and track.kind == "video":
                    stats.first_frame_seconds = time.monotonic() - self._started
                if isinstance(frame, av.VideoFrame):
                    stats.video_frames += 1
                    stats.width, stats.height = frame.width, frame.height
                else:
                    stats.audio_frames += 1
                async with self._progress:
                    self._progress.notify_all()
        except MediaStreamError:
            return

    async def wait_until(
        self, predicate: Callable[[dict[str, RemoteStats]], bool], timeout: float
    ) -> None:
        """Wait until `predicate(remotes)` holds, re-checked as each frame arrives."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: predicate(self.remotes))

    async def close(self) -> None:
        await self._tasks.aclose()
        await asyncio.shield(self.pc.close())
