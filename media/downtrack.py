"""A track sent to one subscriber: the publisher's RTP packets, rewritten for it and sent at once.

Each packet goes straight to the slot's `RtpWriter` (media.rtpwriter), in the stack of the
handler that received it: nothing is re-encoded, reassembled or queued. The down track maps the
publisher's sequence numbers and timestamps onto the subscriber's: gaps are kept, so the
subscriber NACKs what the publisher lost and the retransmission from upstream fills them. When
the source changes (a publisher reconnecting, a slot reused for someone else) both go on where
they were, and video starts again at a keyframe, so a subscriber never gets deltas it cannot
decode. The track is still the sender's track for aiortc, whose own sending loop waits in
`recv()` until the track stops.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.counters import MediaCounters
from media.frames import FRAME_STEP, MediaPacket
from media.rtpwriter import RtpWriter

#: Frames of a codec the subscriber cannot decode before it is reported: about two seconds,
#: time enough for a publisher that was asked to switch codec to have done so.
REFUSED_FRAMES = 60

if TYPE_CHECKING:
    from media.publication import Publication


class DownTrack(MediaStreamTrack):
    def __init__(
        self,
        kind: str,
        writer: RtpWriter,
        counters: MediaCounters,
        on_first_frame: Callable[[DownTrack], None] | None = None,
        on_codec_refused: Callable[[DownTrack, str], None] | None = None,
    ) -> None:
        """`on_codec_refused(track, codec)`: the source has sent a codec the subscriber did not
        negotiate for REFUSED_FRAMES frames in a row (so not just until a switch)."""
        super().__init__()
        self._on_first_frame = on_first_frame
        self._on_codec_refused = on_codec_refused
        self._refused = 0
        self.kind = kind
        self._writer = writer
        self._counters = counters
        self._stopped = asyncio.Event()
        self._publication: Publication | None = None
        #: Packets of the current source are going out (video starts at a keyframe).
        self._started = False
        #: Packets came while the subscriber was not yet connected: it will need a keyframe.
        self._waited = False
        #: Timestamp offset from the source's timeline to the subscriber's (to be set afresh
        #: at the next start when `_rebase`), and the last one sent.
        self._offset = 0
        self._rebase = True
        self._last_out: int | None = None
        # Sequence numbers: the last one seen from the source and its position since the
        # start; outgoing ones are `_out_base + position`, and go on from `_out_next`.
        self._in_last = 0
        self._in_position = 0
        self._out_base = 0
        self._out_next = random.randrange(1 << 15)
        self.frames_sent = 0
        #: The codec of the packets going out, and whether the subscriber negotiated it.
        self._codec = ""
        self._accepted = True
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
        """The packets that follow come from a new encoder: rebase timestamps and sequence
        numbers, and (video) await a keyframe."""
        self._rebase = True
        self._started = False

    def request_keyframe(self) -> None:
        """Called when the subscriber sends PLI or FIR for this track."""
        self._counters.keyframe_requests_received += 1
        if self._publication is not None:
            self._publication.request_keyframe()

    def on_remb(self, bitrate: int) -> None:
        """The subscriber announced what it can receive (media.remb)."""
        self.remb = bitrate
        if self._publication is not None:
            self._publication.remb_changed()

    def push(self, packet: MediaPacket) -> None:
        if self.readyState != "live":
            return
        connection = self._writer.connection()
        if connection is None:
            # Not connected yet (or any more): pick up again at a keyframe once connected.
            if packet.frame_end:
                self._counters.frames_dropped += 1
            self._waited = True
            self._started = False
            return
        if packet.codec != self._codec:
            # A publisher switched codec (the room asked it to), or this slot was given to one
            # with another: start again at a keyframe, if this subscriber can decode it at all.
            self._codec = packet.codec
            self._started = False
            self._accepted = not packet.codec or self._writer.accepts(packet.codec)
            self._refused = 0
        if not self._accepted:
            if packet.frame_end:
                self._counters.frames_dropped += 1
                self._refused += 1
                if self._refused == REFUSED_FRAMES and self._on_codec_refused is not None:
                    self._on_codec_refused(self, packet.codec)
            return
        if not self._started:
            if self.kind == "video" and not packet.keyframe_start:
                if self._waited:
                    self._waited = False
                    self.request_keyframe()
                if packet.frame_end:
                    self._counters.frames_dropped += 1
                return
            self._waited = False
            self._start(packet)
        # The publisher's sequence numbers, unwrapped, counted from the start packet.
        delta = ((packet.sequence - self._in_last + 0x8000) & 0xFFFF) - 0x8000
        position = self._in_position + delta
        if delta > 0:
            self._in_last = packet.sequence
            self._in_position = position
        if position < 0:
            return  # from before the start: the subscriber could not use it
        if self.kind == "audio":
            # Audio is not retransmitted: late packets are dropped and the rest numbered without
            # gaps, so a receiver plays on instead of waiting for what was lost.
            if delta <= 0 and self._out_next > self._out_base:
                return
            position = self._out_next - self._out_base
        out = self._out_base + position
        if out >= self._out_next:
            self._out_next = out + 1
        timestamp = (packet.timestamp + self._offset) & 0xFFFFFFFF
        self._writer.write(out & 0xFFFF, timestamp, packet, connection)
        self._last_out = timestamp
        if packet.frame_end:
            self.frames_sent += 1
            self._counters.frames_forwarded += 1
            if self.frames_sent == 1 and self._on_first_frame is not None:
                self._on_first_frame(self)

    def _start(self, packet: MediaPacket) -> None:
        """Forward from `packet` on: sequence numbers go on from the last one sent, timestamps
        from the last one plus a frame when the source changed."""
        self._started = True
        self._in_last = packet.sequence
        self._in_position = 0
        self._out_base = self._out_next
        if self._rebase:
            self._rebase = False
            start = 0 if self._last_out is None else self._last_out + FRAME_STEP[self.kind]
            self._offset = (start - packet.timestamp) & 0xFFFFFFFF

    async def recv(self) -> None:  # type: ignore[override]
        """aiortc's sending loop waits here for good: packets go out through the writer."""
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self.detach()
        super().stop()
        self._stopped.set()
