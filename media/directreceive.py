"""Publishers' RTP packets handled in the socket's datagram callback: no queue, no task hop.

aiortc receives every datagram the long way round. aioice's protocol first tries to parse it as
STUN (an exception per media packet) and puts it on its connection's `asyncio.Queue`; the DTLS
transport's task wakes for it (a loop iteration and a future per packet), unprotects it, builds
an `RtpPacket` (header extensions decoded into an object), routes it and awaits the receiver's
handler, which keeps statistics, unwraps RTX, generates NACKs, depayloads VP8 (which the SFU
does not use) and stamps a `datetime` for its list of sources.

`DirectReceive` takes the SRTP packets of one bundled transport as the socket hands them over
(RFC 7983: first byte 128..191; RTCP payload types excluded). Those whose SSRC is routed to a
receiver an up track has attached are unprotected, their header read with `struct` and handed
to the up track's sink in the same call, which forwards them on. Everything else takes aiortc's
path unchanged: STUN, DTLS, SRTCP, and RTP for an SSRC nobody has claimed yet, so that aiortc's
router learns new SSRCs (by mid or payload type) from the first packets and this path takes
over from there. While aiortc's queue still holds packets (those that arrived before the
receivers were registered, say), new ones join it: packets must not overtake each other, or a
down track could start at a keyframe after newer packets had gone out and leave a gap no
retransmission fills.

What the receiver did per packet and its RTCP needs is kept (media.uptrack): the statistics its
receiver reports are made of, RTX unwrapping and the NACK generator. The DTLS transport's
receive counters are kept too. The private names used are checked at start-up (media.seams).

It also refuses two kinds of datagram that would end aiortc's receiving task (and so the
participant's media) if they reached it: an empty one, and an SRTP-looking one longer than
pylibsrtp's 1500-byte buffer. Anyone who can reach the media port can send either.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver, StreamStatistics
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

from media.counters import MediaCounters
from media.srtp import fast_srtp

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHLL")
_EXTENSION = struct.Struct("!HH")
#: RFC 8285 one-byte header extensions.
ONE_BYTE_PROFILE = 0xBEDE

# aiortc's and aioice's private names (media.seams checks them).
DTLS_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
DTLS_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
#: The DTLS transport's negotiated header extension ids (a `HeaderExtensions` of ids).
EXTENSION_IDS = "_HeaderExtensionsMap__ids"
RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
RECEIVER_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
RECEIVER_STREAMS = "_RTCRtpReceiver__remote_streams"
RECEIVER_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"
#: Marks a transport that has a DirectReceive.
_ATTR = "_screenvisit_direct_receive"
#: pylibsrtp's buffer: a longer SRTP or SRTCP datagram cannot be unprotected.
MAX_SRTP_DATAGRAM = 1500
#: Errors in a sink are logged the first time and then once per this many.
ERROR_LOG_EVERY = 1000


@dataclass(slots=True)
class ReceivedPacket:
    """An RTP packet's header fields and payload, as aiortc's statistics and NACK generator
    read them (`sequence_number`, `timestamp`), plus the abs-send-time when it carried one."""

    ssrc: int
    payload_type: int
    sequence_number: int
    timestamp: int
    marker: int
    payload: bytes
    send_time: int | None


PacketSink = Callable[[ReceivedPacket], None]


def parse_rtp(data: bytes, abs_send_time_id: int | None) -> ReceivedPacket | None:
    """The header fields and payload of a plain RTP packet, or None if it is malformed."""
    if len(data) < 12:
        return None
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        return None
    pos = 12 + 4 * (first & 0x0F)
    end = len(data)
    send_time = None
    if first & 0x10:
        if end < pos + 4:
            return None
        profile, words = _EXTENSION.unpack_from(data, pos)
        pos += 4
        block_end = pos + 4 * words
        if block_end > end:
            return None
        if profile == ONE_BYTE_PROFILE and abs_send_time_id is not None:
            at = pos
            while at < block_end:
                byte = data[at]
                if byte == 0:
                    at += 1  # padding
                    continue
                ident, length = byte >> 4, (byte & 0x0F) + 1
                at += 1
                if ident == abs_send_time_id and length == 3 and at + 3 <= block_end:
                    send_time = (data[at] << 16) | (data[at + 1] << 8) | data[at + 2]
                    break
                if ident == 15:
                    break  # RFC 8285: stop parsing
                at += length
        pos = block_end
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > end - pos:
            return None
        end -= padding
    if pos > end:
        return None
    return ReceivedPacket(
        ssrc, second & 0x7F, sequence, timestamp, second >> 7, data[pos:end], send_time
    )


class DirectReceive:
    """The direct path for one DTLS transport (one per bundled peer connection)."""

    def __init__(self, dtls: RTCDtlsTransport, counters: MediaCounters) -> None:
        self._dtls = dtls
        self._counters = counters
        self._sinks: dict[Any, PacketSink] = {}
        self._wrapped: set[int] = set()
        # Filled in by aiortc as receivers and senders are registered: read per packet.
        self._extension_ids = getattr(dtls._rtp_header_extensions_map, EXTENSION_IDS)
        self.packets = 0
        self.dropped = 0
        self.errors = 0

    @classmethod
    def of(cls, dtls: RTCDtlsTransport, counters: MediaCounters | None = None) -> DirectReceive:
        """The transport's DirectReceive, made on first use (counting into `counters`)."""
        direct: DirectReceive | None = getattr(dtls, _ATTR, None)
        if direct is None:
            direct = cls(dtls, counters if counters is not None else MediaCounters())
            setattr(dtls, _ATTR, direct)
        return direct

    def attach(self, receiver: Any, sink: PacketSink) -> None:
        """Hand the packets aiortc routes to `receiver` to `sink` instead."""
        self._sinks[receiver] = sink

    def wrap_sockets(self) -> None:
        """Take over the datagram callback of each socket gathered so far (idempotent). Call
        after the local description is set (gathering opens the sockets)."""
        connection = self._dtls.transport._connection
        for protocol in connection._protocols:
            if type(protocol) is not StunProtocol or id(protocol) in self._wrapped:
                continue
            self._wrapped.add(id(protocol))
            protocol.datagram_received = self._wrap(protocol.datagram_received)  # type: ignore[method-assign]

    def _wrap(self, original: Callable[[bytes, tuple[Any, ...]], None]) -> Callable[..., None]:
        dtls = self._dtls
        ssrc_table = dtls._rtp_router.ssrc_table
        # aiortc's receive queue: while it holds packets, new ones join it to keep their order.
        backlog = dtls.transport._connection._queue
        sinks = self._sinks
        counters = vars(dtls)

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            if not data:
                self._refuse()  # aiortc's receiving task would end on reading its first byte
                return
            # RFC 7983: RTP/RTCP (first byte 128..191), not RTCP (payload types 192..223).
            if 127 < data[0] < 192:
                if len(data) > MAX_SRTP_DATAGRAM:
                    # pylibsrtp raises ValueError for it, which aiortc's task does not catch.
                    self._refuse()
                    return
                if len(data) >= 12 and not 191 < data[1] < 224 and backlog.empty():
                    srtp = dtls._rx_srtp
                    if srtp is not None:
                        sink = sinks.get(ssrc_table.get(int.from_bytes(data[8:12], "big")))
                        if sink is not None:
                            counters[DTLS_RX_BYTES] += len(data)
                            counters[DTLS_RX_PACKETS] += 1
                            self._receive(srtp, data, sink)
                            return
            original(data, addr)

        return datagram_received

    def _refuse(self) -> None:
        """A datagram not forwarded: not authentic (forged or replayed), or not usable RTP."""
        self.dropped += 1
        self._counters.packets_refused += 1

    def _receive(self, session: pylibsrtp.Session, data: bytes, sink: PacketSink) -> None:
        try:
            plain = fast_srtp(session).unprotect(data)
        except (pylibsrtp.Error, ValueError):
            self._refuse()  # replayed or not authentic: aiortc drops it as well
            return
        packet = parse_rtp(plain, self._extension_ids.abs_send_time)
        if packet is None:
            self._refuse()
            return
        self.packets += 1
        self._counters.packets_received_direct += 1
        try:
            sink(packet)
        except Exception:
            # aiortc's receiving task would have died of it; here one packet is lost.
            self.errors += 1
            if self.errors % ERROR_LOG_EVERY == 1:
                logger.exception("forwarding a received packet failed (%d so far)", self.errors)


#: Sends a NACK for `(media SSRC, sequence numbers)`.
NackSender = Callable[[int, list[int]], None]


class ReceiverRecords:
    """What aiortc's receiver does with each packet besides buffering it, for the packets taken
    directly: the statistics its receiver reports are made of, RTX unwrapping (RFC 4588) and
    NACKs for new gaps (its NACK generator). Its list of sources (`getSynchronizationSources`)
    is not kept: nothing on the server reads it."""

    def __init__(self, receiver: RTCRtpReceiver, send_nack: NackSender) -> None:
        self._receiver = receiver
        state = vars(receiver)
        # Filled in place when the receiver starts: the same objects it reads.
        self._codecs: dict[int, Any] = state[RECEIVER_CODECS]
        self._rtx_ssrc: dict[int, int] = state[RECEIVER_RTX_SSRC]
        self._streams: dict[int, StreamStatistics] = state[RECEIVER_STREAMS]
        self._nack_generator = state[RECEIVER_NACK_GENERATOR]
        self._send_nack = send_nack
        #: payload type -> the payload type it retransmits, or None when it is not RTX.
        self._rtx_of: dict[int, int | None] = {}

    def admit(self, packet: ReceivedPacket) -> ReceivedPacket | None:
        """Record `packet`; return it as the media packet it carries (a retransmission
        unwrapped), or None when the receiver would have dropped it."""
        if not self._receiver._enabled:
            return None
        payload_type = packet.payload_type
        codec = self._codecs.get(payload_type)
        if codec is None:
            return None
        stats = self._streams.get(packet.ssrc)
        if stats is None:
            stats = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(cast(Any, packet))
        if payload_type not in self._rtx_of:
            apt = codec.parameters.get("apt") if codec.name.lower() == "rtx" else None
            self._rtx_of[payload_type] = apt if isinstance(apt, int) else None
        original_type = self._rtx_of[payload_type]
        if original_type is not None:
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            payload = packet.payload
            if original_ssrc is None or len(payload) < 2 or original_type not in self._codecs:
                return None
            packet = ReceivedPacket(
                original_ssrc,
                original_type,
                (payload[0] << 8) | payload[1],
                packet.timestamp,
                packet.marker,
                payload[2:],
                packet.send_time,
            )
        generator = self._nack_generator
        if generator is not None:
            lost = newly_missing(generator, packet)
            if lost:
                self._send_nack(packet.ssrc, lost)
        return packet


def newly_missing(generator: NackGenerator, packet: ReceivedPacket | RtpPacket) -> list[int]:
    """Record `packet` with aiortc's NACK generator; the packets missing in the gap it opens.

    Only those: the generator keeps every packet still missing, and asking for all of them at
    each new gap repeated requests for packets asked for a moment ago, within one round trip
    (`media.reassembly.NackRetries` asks again once a round trip has passed)."""
    last = generator.max_seq
    if not generator.add(cast(RtpPacket, packet)) or last is None:  # it reads the number only
        return []
    return sorted(
        (s for s in generator.missing if uint16_gt(s, last)), key=lambda s: uint16_add(s, -last)
    )


def receive_directly(pc: RTCPeerConnection, counters: MediaCounters) -> DirectReceive | None:
    """Start the direct path on `pc`'s bundled transport: call after setLocalDescription."""
    transceivers = pc.getTransceivers()
    if not transceivers:
        return None
    direct = DirectReceive.of(transceivers[0].receiver.transport, counters)
    direct.wrap_sockets()
    return direct
