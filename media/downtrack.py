"""A track sent to one subscriber: forwarded encoded frames handed to aiortc's sender as packets.

`RTCRtpSender` only packetises when `recv()` returns an `av.Packet`, so nothing is re-encoded.
The down track keeps its outgoing timestamps continuous when its source changes (a publisher
reconnecting, a slot reused for someone else) and, for video, holds frames back until a keyframe
so a subscriber never gets deltas it cannot decode.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.counters import MediaCounters
from media.frames import CLOCK_RATE, FRAME_STEP, EncodedFrame

if TYPE_CHECKING:
    from media.publication import Publication

#: Frames a subscriber may fall behind before the oldest are dropped (about a second of video).
QUEUE_FRAMES = {"video": 30, "audio": 50}


class DownTrack(MediaStreamTrack):
    def __init__(
        self,
        kind: str,
        counters: MediaCounters,
        on_first_frame: Callable[[DownTrack], None] | None = None,
    ) -> None:
        super().__init__()
        self._on_first_frame = on_first_frame
        self.kind = kind
        self._counters = counters
        self._time_base = fractions.Fraction(1, CLOCK_RATE[kind])
        self._queue: deque[EncodedFrame] = deque()
        self._capacity = QUEUE_FRAMES[kind]
        self._ready = asyncio.Event()
        self._publication: Publication | None = None
        self._need_keyframe = kind == "video"
        self._offset: int | None = None
        self._last_out: int | None = None
        self.frames_sent = 0
        #: The subscriber's latest bandwidth estimate (REMB, bit/s) for this track, if any.
        self.remb: int | None = None

    @property
    def publication(self) -> Publication | None:
        return self._publication

    def attach(self, publication: Publication) -> None:
        self.detach()
        self._publication = publication
        publication.subscribers.add(self)
        self.source_changed()
        publication.request_keyframe()

    def detach(self) -> None:
        if self._publication is not None:
            self._publication.subscribers.discard(self)
            self._publication = None
        self._queue.clear()
        self.source_changed()

    def source_changed(self) -> None:
        """The frames that follow come from a new encoder: rebase timestamps, await a keyframe."""
        self._offset = None
        self._need_keyframe = self.kind == "video"

    def request_keyframe(self) -> None:
        """Called when the subscriber sends PLI or FIR for this track."""
        if self._publication is not None:
            self._publication.request_keyframe()

    def on_remb(self, bitrate: int) -> None:
        """The subscriber announced what it can receive (media.remb)."""
        self.remb = bitrate
        if self._publication is not None:
            self._publication.remb_changed()

    def push(self, frame: EncodedFrame) -> None:
        if self.readyState != "live":
            return
        if self._need_keyframe:
            if not frame.keyframe:
                self._counters.frames_dropped += 1
                return
            self._need_keyframe = False
        if self._offset is None:
            start = 0 if self._last_out is None else self._last_out + FRAME_STEP[self.kind]
            self._offset = start - frame.timestamp
        if len(self._queue) >= self._capacity:
            # The subscriber is not keeping up: start over at the next keyframe.
            self._counters.frames_dropped += len(self._queue)
            self._queue.clear()
            if self.kind == "video":
                self._need_keyframe = not frame.keyframe
                if self._need_keyframe:
                    self.request_keyframe()
                    return
        self._last_out = frame.timestamp + self._offset
        self._queue.append(EncodedFrame(frame.data, self._last_out, frame.keyframe))
        self._ready.set()

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = self._time_base
        self.frames_sent += 1
        self._counters.frames_forwarded += 1
        if self.frames_sent == 1 and self._on_first_frame is not None:
            self._on_first_frame(self)
        return packet

    def stop(self) -> None:
        self.detach()
        super().stop()
        self._ready.set()
