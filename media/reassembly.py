"""Encoded frames from a receiver as soon as they are complete, without backlog: how the bots
and test clients (media.client) receive, as a browser would. The server reassembles nothing
(media.uptrack); it uses `NackRetries` from here.

A tapped receiver still puts each RTP packet through aiortc's `JitterBuffer`, which hands back at
most one frame per packet added. Both kinds suffered from it under loss:

- audio (16 packets, 4 prefetched): a lost packet stalls the buffer until 16 newer ones have
  arrived, then frames are thrown away to make room and the buffer stays full: one loss added
  200 ms of delay for good, and at 5 % loss only 37 of 50 frames a second came through;
- video: after a retransmission fills a gap, the frames completed behind it come out one per
  later packet, and at about one packet per frame that backlog never drains: each recovered loss
  added a frame or two of delay for good (10 % fewer frames in 5 s at 5 % loss).

So the receiver's buffer is replaced, and frames go straight to `deliver`: for audio every
packet is a frame (each Opus RTP packet is a whole frame; concealing what was lost is the
decoder's job, as a browser's NetEq does); for video every frame the packet completes. The
receiver is handed no frame, so its tap (`media.tap`) only keeps the decoder thread idle.

aiortc's receiver NACKs missing packets only when a new gap appears, so a lost retransmission
stalled video until the next loss. `NackRetries` asks again for what is still missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver, TimestampMapper
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

# The name mangling of RTCRtpReceiver.__jitter_buffer; media.seams checks it at start-up.
JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
#: aiortc's own video buffer size, in packets.
VIDEO_CAPACITY = 512

#: A packet still missing one round trip after its last NACK is asked for again (a request
#: repeated sooner would only cross its retransmission on the way); this is the round trip
#: assumed until one is measured (RTCP receiver reports)...
DEFAULT_RTT_SECONDS = 0.1
#: ...but never more often than this (a LAN's round trip is well under a millisecond)...
MIN_RETRY_SECONDS = 0.02
#: ...and at most this many times (then the buffer's own overflow and PLI take over).
NACK_RETRIES = 10

FrameDelivery = Callable[[JitterFrame], None]
#: Sends a NACK for `(media_ssrc, sequence numbers)`.
NackSender = Callable[[int, list[int]], None]
#: The latest measured round trip in seconds, or None before one is measured.
RttSource = Callable[[], float | None]


class AudioFrames:
    """Every packet is a frame, delivered at once. A duplicate, or a packet overtaken by a newer
    one, is dropped: its moment to be played has passed."""

    def __init__(self, deliver: FrameDelivery) -> None:
        self._deliver = deliver
        self._timestamps = TimestampMapper()
        self._last: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        sequence = packet.sequence_number
        if self._last is not None and not uint16_gt(sequence, self._last):
            return False, None
        self._last = sequence
        data: bytes = getattr(packet, "_data", b"")  # set by the receiver's depayloading
        if data:
            self._deliver(JitterFrame(data, self._timestamps.map(packet.timestamp)))
        return False, None


class NackRetries:
    """Asks again for packets still missing one round trip (`rtt()`, DEFAULT_RTT_SECONDS until
    measured) after they were last NACKed, at most NACK_RETRIES times; then `give_up(ssrc)` (a
    keyframe request) if given. aiortc's NackGenerator NACKs each gap once, when it appears;
    the retries are ours."""

    def __init__(
        self,
        nack: NackSender | None,
        clock: Callable[[], float] = time.monotonic,
        give_up: Callable[[int], None] | None = None,
        rtt: RttSource | None = None,
    ) -> None:
        self._nack = nack
        self._clock = clock
        self._give_up = give_up
        self._rtt = rtt
        self._highest: int | None = None
        #: Missing sequence number -> (when it was last NACKed, how many times).
        self._missing: dict[int, tuple[float, int]] = {}

    def add(self, ssrc: int, sequence: int) -> None:
        now = self._clock()
        if self._highest is None:
            self._highest = sequence
        elif uint16_gt(sequence, self._highest):
            gap = uint16_add(sequence, -self._highest) - 1
            if gap < VIDEO_CAPACITY:
                for step in range(1, gap + 1):
                    self._missing[uint16_add(self._highest, step)] = (now, 0)
            self._highest = sequence
        elif self._missing:
            self._missing.pop(sequence, None)
        if not self._missing:
            return
        wait = self.retry_after()
        due = [s for s, (at, _) in self._missing.items() if now - at >= wait]
        if not due:
            return
        gave_up = False
        for missing in due:
            tries = self._missing[missing][1] + 1
            if tries > NACK_RETRIES:
                del self._missing[missing]
                gave_up = True
            else:
                self._missing[missing] = (now, tries)
        again = sorted(s for s in due if s in self._missing)
        if again and self._nack is not None:
            self._nack(ssrc, again)
        if gave_up and self._give_up is not None:
            self._give_up(ssrc)

    def retry_after(self) -> float:
        """Seconds from a packet's last NACK before it is asked for again: one round trip."""
        measured = self._rtt() if self._rtt is not None else None
        if measured is None or measured <= 0:
            return DEFAULT_RTT_SECONDS
        return max(measured, MIN_RETRY_SECONDS)


class VideoFrames:
    """aiortc's video `JitterBuffer`, drained of every frame a packet completes; packets still
    missing are NACKed again through `nack`, checked as packets arrive."""

    def __init__(
        self,
        deliver: FrameDelivery,
        nack: NackSender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deliver = deliver
        self._retries = NackRetries(nack, clock)
        self._buffer = JitterBuffer(capacity=VIDEO_CAPACITY, is_video=True)
        self._timestamps = TimestampMapper()
        #: The payload type of the latest packet: the codec of the frames it completes.
        self.payload_type: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self._retries.add(packet.ssrc, packet.sequence_number)
        self.payload_type = packet.payload_type
        # The PLI flag (the buffer overflowed or restarted) goes back to the receiver to send.
        pli, frame = self._buffer.add(packet)
        while frame is not None:
            frame.timestamp = self._timestamps.map(frame.timestamp)
            self._deliver(frame)
            frame = self._buffer._remove_frame(packet.sequence_number)
        return pli, None


def replace_jitter_buffer(
    receiver: RTCRtpReceiver,
    kind: str,
    deliver: FrameDelivery,
    nack: NackSender | None = None,
) -> AudioFrames | VideoFrames:
    """Install before the receiver gets packets; frames then go to `deliver`, not its queue."""
    frames = AudioFrames(deliver) if kind == "audio" else VideoFrames(deliver, nack)
    setattr(receiver, JITTER_BUFFER_ATTR, frames)
    return frames
