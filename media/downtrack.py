"""A track sent to one subscriber: forwarded encoded frames, written out as RTP at once.

Each frame goes straight to the slot's `RtpWriter` (media.rtpwriter), in the stack of the packet
that completed it: nothing is re-encoded and nothing queues. The track is still the sender's
track for aiortc, whose own sending loop waits in `recv()` until the track stops. The down track
keeps its outgoing timestamps continuous when its source changes (a publisher reconnecting, a
slot reused for someone else) and, for video, holds frames back until a keyframe so a subscriber
never gets deltas it cannot decode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.counters import MediaCounters
from media.frames import FRAME_STEP, EncodedFrame
from media.rtpwriter import RtpWriter

if TYPE_CHECKING:
    from media.publication import Publication


class DownTrack(MediaStreamTrack):
    def __init__(
        self,
        kind: str,
        writer: RtpWriter,
        counters: MediaCounters,
        on_first_frame: Callable[[DownTrack], None] | None = None,
    ) -> None:
        super().__init__()
        self._on_first_frame = on_first_frame
        self.kind = kind
        self._writer = writer
        self._counters = counters
        self._stopped = asyncio.Event()
        self._publication: Publication | None = None
        self._need_keyframe = kind == "video"
        #: Frames came while the subscriber was not yet connected: it will need a keyframe.
        self._waited = False
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
        publication = self._publication
        if publication is not None:
            publication.subscribers.discard(self)
            self._publication = None
            if self.remb is not None:
                publication.remb_changed()  # the weakest link may have gone
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
        connection = self._writer.connection()
        if connection is None:
            # Not connected yet (or any more): what it misses now it could not decode later.
            self._counters.frames_dropped += 1
            self._waited = True
            self._need_keyframe = self.kind == "video"
            return
        if self._waited:
            self._waited = False
            if self._need_keyframe and not frame.keyframe:
                self.request_keyframe()
        if self._need_keyframe:
            if not frame.keyframe:
                self._counters.frames_dropped += 1
                return
            self._need_keyframe = False
        if self._offset is None:
            start = 0 if self._last_out is None else self._last_out + FRAME_STEP[self.kind]
            self._offset = start - frame.timestamp
        timestamp = frame.timestamp + self._offset
        self._writer.write(EncodedFrame(frame.data, timestamp, frame.keyframe), connection)
        self._last_out = timestamp
        self.frames_sent += 1
        self._counters.frames_forwarded += 1
        if self.frames_sent == 1 and self._on_first_frame is not None:
            self._on_first_frame(self)

    async def recv(self) -> None:  # type: ignore[override]
        """aiortc's sending loop waits here for good: frames go out through the writer."""
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self.detach()
        super().stop()
        self._stopped.set()
