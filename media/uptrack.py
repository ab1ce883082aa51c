"""A publisher's incoming track: its RTP packets as they arrive, keyframe requests and the
weakest subscriber's bandwidth estimate back upstream.

Packets come straight from the socket (media.directreceive), after SRTP and what aiortc's
receiver does besides buffering (statistics for its receiver reports, RTX unwrapping, NACKs).
The first packets of an SSRC aiortc has not routed yet come the long way, where the receiver
would put them in its jitter buffer (`UpstreamPackets`). Either way they go on to the
subscribers at once, one `MediaPacket` shared by all; nothing is reassembled (reassembling made
each hop wait for the next frame's first packet: a frame's time of latency). Packets still
missing are NACKed again (media.reassembly.NackRetries), and a packet given up on asks the
publisher for a keyframe.

aiortc's own estimate of the publisher's uplink (a REMB per packet while it sees overuse, and a
sixth of the server's CPU) is switched off: forwarded packets keep the publisher's
abs-send-time, so each subscriber's REMB measures the whole path from the publisher, and the
weakest of them is what the publisher hears (media.remb).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from media.counters import MediaCounters
from media.directreceive import RECEIVER_CODECS, DirectReceive, ReceivedPacket, ReceiverRecords
from media.firstframe import FirstFrame
from media.frames import MediaPacket, keyframe_start_for
from media.keyframes import KeyframeRequests
from media.reassembly import JITTER_BUFFER_ATTR, NackRetries, RttSource
from media.remb import PublisherRemb, send_remb
from media.tap import install_tap
from media.tasks import OwnedTasks

# The name mangling of RTCRtpReceiver.__remote_bitrate_estimator; media.seams checks it.
ESTIMATOR_ATTR = "_RTCRtpReceiver__remote_bitrate_estimator"

PacketSink = Callable[[MediaPacket], None]


class UpstreamPackets:
    """Stands in for the receiver's jitter buffer on aiortc's own path: hands every packet on
    and never returns a frame, so the receiver has nothing to decode."""

    def __init__(self, take: Callable[[ReceivedPacket], None]) -> None:
        self._take = take

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self._take(
            ReceivedPacket(
                packet.ssrc,
                packet.payload_type,
                packet.sequence_number,
                packet.timestamp,
                packet.marker,
                packet.payload,
                packet.extensions.abs_send_time,
            )
        )
        return False, None


class UpTrack:
    def __init__(
        self,
        kind: str,
        receiver: RTCRtpReceiver,
        media_ssrc: Callable[[], int | None],
        tasks: OwnedTasks,
        counters: MediaCounters,
        remb: PublisherRemb | None = None,
        rtt: RttSource | None = None,
    ) -> None:
        """`remb`: the estimates of every video track of this publisher (media.remb). `rtt` is
        the measured round trip to the publisher: NACKs are repeated no sooner."""
        self.kind = kind
        self._receiver = receiver
        self._media_ssrc = media_ssrc
        self._tasks = tasks
        self._counters = counters
        self._sinks: list[PacketSink] = []
        self._first_frame = FirstFrame()
        self._keyframes = KeyframeRequests(receiver, media_ssrc, tasks, counters)
        self.frames = 0
        self._remb = remb if remb is not None else PublisherRemb()
        # The tap keeps the receiver's decoder thread idle; the packets come to us instead.
        install_tap(receiver, lambda _codec, _frame: None)
        self._video = kind == "video"
        #: The receiver's payload types -> codecs (filled when it starts), and per payload type
        #: the codec's name and keyframe test, learned from the first packet of each.
        self._codecs: dict[int, Any] = getattr(receiver, RECEIVER_CODECS)
        self._codec_of: dict[int, tuple[str, Callable[[bytes], bool]]] = {}
        self._retries: NackRetries | None = None
        if self._video:
            self._retries = NackRetries(
                self._send_nack, give_up=lambda _ssrc: self.request_keyframe(), rtt=rtt
            )
        setattr(receiver, JITTER_BUFFER_ATTR, UpstreamPackets(self._take))
        setattr(receiver, ESTIMATOR_ATTR, None)
        records = ReceiverRecords(receiver, self._send_nack)

        def take_direct(packet: ReceivedPacket) -> None:
            admitted = records.admit(packet)
            if admitted is not None:
                self._take(admitted)

        DirectReceive.of(receiver.transport, counters).attach(receiver, take_direct)

    def add_sink(self, sink: PacketSink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: PacketSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def on_first_frame(self, callback: Callable[[], None]) -> None:
        self._first_frame.on(callback)

    def _take(self, packet: ReceivedPacket) -> None:
        """A media packet from the publisher (a retransmission already unwrapped)."""
        if self._retries is not None:
            self._retries.add(packet.ssrc, packet.sequence_number)
        payload = packet.payload
        if not payload:
            return  # padding only: nothing to forward
        codec = self._codec_of.get(packet.payload_type)
        if codec is None:
            known = self._codecs.get(packet.payload_type)
            mime = known.mimeType.lower() if known is not None else ""
            codec = (mime, keyframe_start_for(mime))
            if known is not None:
                self._codec_of[packet.payload_type] = codec
        if self._video:
            keyframe_start = codec[1](payload)
            frame_end = bool(packet.marker)
        else:
            keyframe_start = frame_end = True
        self._on_packet(
            MediaPacket(
                packet.sequence_number,
                packet.timestamp,
                bool(packet.marker),
                payload,
                packet.send_time,
                keyframe_start,
                frame_end,
                codec[0],
            )
        )

    def _on_packet(self, packet: MediaPacket) -> None:
        if packet.frame_end:
            self.frames += 1
            self._counters.frames_received += 1
            self._first_frame.arrived()
        for sink in self._sinks:
            sink(packet)

    def _send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        self._counters.nacks_sent += 1
        self._tasks.spawn(self._receiver._send_rtcp_nack(media_ssrc, lost))

    def published(self, on: bool) -> None:
        """Whether a publication forwards this track now (its estimate counts only then)."""
        if self.kind == "video":
            self._remb.published(self, on)

    def cap_bitrate(self, bitrate: int) -> None:
        """The weakest subscriber's estimate: tell the publisher (the sum over its published
        video tracks, media.remb), five times a second at most unless it falls."""
        if self.kind != "video":
            return
        total = self._remb.estimate(self, bitrate)
        if total is None or not self._remb.throttle.admit(total):
            return
        ssrcs = [
            ssrc
            for track in self._remb.tracks()
            if isinstance(track, UpTrack) and (ssrc := track._media_ssrc()) is not None
        ]
        if ssrcs:
            self._tasks.spawn(self._announce(total, ssrcs))

    async def _announce(self, bitrate: int, ssrc: list[int]) -> None:
        try:
            await send_remb(self._receiver, bitrate, ssrc)
        except RuntimeError:
            pass  # not started yet: the next estimate will go out

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: at once, or merged into the next allowed slot."""
        if self._video:
            self._keyframes.request()
