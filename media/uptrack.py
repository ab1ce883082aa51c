"""A publisher's incoming track: encoded frames from the tap, keyframe requests back upstream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from media.counters import MediaCounters
from media.frames import EncodedFrame, is_vp8_keyframe
from media.reassembly import replace_jitter_buffer
from media.remb import RembLimiter
from media.tap import install_tap
from media.tasks import OwnedTasks

logger = logging.getLogger(__name__)

#: At most one keyframe request per publisher per this many seconds; requests in between merge.
KEYFRAME_REQUEST_INTERVAL = 0.5


class UpTrack:
    def __init__(
        self,
        kind: str,
        receiver: RTCRtpReceiver,
        media_ssrc: Callable[[], int | None],
        tasks: OwnedTasks,
        counters: MediaCounters,
    ) -> None:
        self.kind = kind
        self._receiver = receiver
        self._media_ssrc = media_ssrc
        self._tasks = tasks
        self._counters = counters
        self._sinks: list[Callable[[EncodedFrame], None]] = []
        self._first_frame_at: float | None = None
        self._on_first_frame: list[Callable[[], None]] = []
        self._last_request = 0.0
        self._request_pending = False
        self.frames = 0
        #: What the publisher may send (bit/s): set by its publication to its weakest subscriber.
        self.bitrate_cap: Callable[[], int | None] = lambda: None
        self._announced_cap: int | None = None
        self._remb = RembLimiter(receiver, lambda: self.bitrate_cap()) if kind == "video" else None
        # Frames come from our own buffer; the tap keeps the receiver's decoder idle.
        install_tap(receiver, lambda _codec, jitter_frame: self._on_encoded(jitter_frame))
        replace_jitter_buffer(receiver, kind, self._on_encoded, self._nack_again)

    def add_sink(self, sink: Callable[[EncodedFrame], None]) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[EncodedFrame], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def on_first_frame(self, callback: Callable[[], None]) -> None:
        self._on_first_frame.append(callback)

    def _on_encoded(self, jitter_frame: JitterFrame) -> None:
        data = bytes(jitter_frame.data)
        keyframe = self.kind == "audio" or is_vp8_keyframe(data)
        frame = EncodedFrame(data, jitter_frame.timestamp, keyframe)
        self.frames += 1
        self._counters.frames_received += 1
        if self._first_frame_at is None:
            self._first_frame_at = time.monotonic()
            for callback in self._on_first_frame:
                try:
                    callback()
                except Exception:
                    # Runs inside aiortc's packet handler: a failure here must not stop media.
                    logger.exception("first-frame callback failed")
        for sink in self._sinks:
            sink(frame)

    def _nack_again(self, media_ssrc: int, lost: list[int]) -> None:
        self._tasks.spawn(self._receiver._send_rtcp_nack(media_ssrc, lost))

    def cap_bitrate(self, bitrate: int) -> None:
        """A subscriber's estimate changed: when the cap drops, tell the publisher at once."""
        if self._remb is None:
            return
        if self._announced_cap is None or bitrate < self._announced_cap:
            ssrc = self._media_ssrc()
            if ssrc is not None:
                self._tasks.spawn(self._remb.tighten(ssrc))
        self._announced_cap = bitrate

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: at once, or merged into the next allowed slot."""
        if self.kind != "video" or self._request_pending:
            if self._request_pending:
                self._counters.keyframe_requests_merged += 1
            return
        wait = self._last_request + KEYFRAME_REQUEST_INTERVAL - time.monotonic()
        self._request_pending = True
        self._tasks.spawn(self._send_pli(max(wait, 0.0)))

    async def _send_pli(self, delay: float) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            ssrc = self._media_ssrc()
            if ssrc is not None:
                self._last_request = time.monotonic()
                self._counters.keyframe_requests_sent += 1
                await self._receiver._send_rtcp_pli(ssrc)
        finally:
            self._request_pending = False
