"""Forwarded packets go out at once, from the handler that received them from the publisher
(compiled: at the end of that event loop iteration, media.fanout).

aiortc's sender pulls each frame through its track's `recv()` in a task of its own, packetises
it, builds an `RtpPacket` per payload, computes the header extensions and the send time (from
`datetime`) for every packet, and awaits four coroutines to reach the socket: in the forwarding
benchmark that path was a third of the server's CPU. `RtpWriter` sends the publisher's payload
as it came, in the caller's stack: the header and the extension block laid out once (the
subscriber's mid, the publisher's abs-send-time) go to the process's `Fanout` (media.fanout),
which fills them in, protects and sends on the ICE pair's socket, in Python or compiled. UDP
never blocks, so a subscriber on a narrow link cannot hold anyone back; what it cannot take is
lost on its link, and its NACKs, PLIs and REMBs say so.

aiortc's sender stays for everything else, and the writer keeps it informed:

- sender reports: the writer updates the counters and timestamps `_run_rtcp` reports;
- NACKs: `_retransmit` is replaced by the writer's own, from its history of what it sent,
  wrapped as RTX when negotiated;
- the DTLS transport's byte and packet counters (its stats, our connection-quality samples).

The private names it uses are checked at start-up by media.seams.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Awaitable, Callable

from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap

from media.counters import MediaCounters
from media.fanout import Fanout, PyFanout, SendTarget
from media.frames import MediaPacket

#: Packets kept for retransmission (a second of 1.2 Mbps video is about 120).
HISTORY_SIZE = 512
#: Seconds between 1900 (NTP) and 1970 (Unix).
NTP_EPOCH_OFFSET = 2_208_988_800

_EXTENSION = struct.Struct("!HH")
_OSN = struct.Struct("!H")

#: Stands for the send time when the extension block is laid out (no mid byte is 0xAB).
SEND_TIME_MARK = 0xABCDEF

# aiortc's private counters (name-mangled); media.seams checks they exist.
SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
SENDER_OCTET_COUNT = "_RTCRtpSender__octet_count"
SENDER_PACKET_COUNT = "_RTCRtpSender__packet_count"

#: What a connected writer sends on: the ICE pair's socket and address, the SRTP session, and the
#: DTLS transport's counters.
Connection = SendTarget


#: A packet sent, kept for retransmission: sequence, marker, timestamp, payload, send time,
#: payload type and RTX payload type.
_Sent = tuple[int, int, int, bytes, int | None, int, int | None]


def ntp_at(unix_time: float) -> int:
    """`unix_time` as a 64-bit NTP timestamp."""
    return int((unix_time + NTP_EPOCH_OFFSET) * (1 << 32))


class RtpWriter:
    """Sends one down slot's packets through `sender`'s transport, as `sender` would have."""

    def __init__(
        self,
        sender: RTCRtpSender,
        counters: MediaCounters | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        self._sender = sender
        self._fanout: Fanout = fanout if fanout is not None else PyFanout()
        self._target: SendTarget | None = None
        self._counters = counters if counters is not None else MediaCounters()
        #: aiortc's sender state: its reported counters are updated here per packet.
        self._reported = vars(sender)
        self._payload_type: int | None = None
        self._rtx_payload_type: int | None = None
        #: Per negotiated codec (lower-case mime type): its payload type and its RTX one. A
        #: slot carries whichever publisher's codec as it is, so a packet picks its own.
        self._payload_types: dict[str, tuple[int, int | None]] = {}
        #: The RTP header and extension block (mid, abs-send-time) every packet starts from:
        #: the fixed header goes into its first 12 bytes, the send time at `_send_time_at`
        #: (-1: not negotiated).
        self._head = bytes(12)
        self._send_time_at = -1
        self._rtx_sequence = random.randrange(1 << 15)  # as aiortc: no early wraparound
        self._timestamp_origin = random.randrange(1 << 32)
        #: sequence % HISTORY_SIZE -> (sequence, marker, timestamp, payload, send time,
        #: payload type, RTX payload type)
        self._history: list[_Sent | None] = [None] * HISTORY_SIZE
        self.packets_sent = 0
        send: Callable[[RTCRtpSendParameters], Awaitable[None]] = sender.send

        async def send_noted(parameters: RTCRtpSendParameters) -> None:
            self._configure(parameters)
            await send(parameters)

        setattr(sender, "send", send_noted)  # noqa: B010
        setattr(sender, "_retransmit", self._retransmit)  # noqa: B010

    def _configure(self, parameters: RTCRtpSendParameters) -> None:
        rtx_for: dict[object, int | None] = {
            c.parameters.get("apt"): c.payloadType
            for c in parameters.codecs
            if c.name.lower() == "rtx"
        }
        first: tuple[int, int | None] | None = None
        for codec in parameters.codecs:
            if codec.name.lower() != "rtx" and codec.payloadType is not None:
                types = (codec.payloadType, rtx_for.get(codec.payloadType))
                self._payload_types.setdefault(codec.mimeType.lower(), types)
                first = first or types
        if first is not None:
            self._payload_types[""] = first
            self._payload_type, self._rtx_payload_type = first
        # aiortc's own serialisation lays the block out once; each packet fills in its time.
        extensions = HeaderExtensionsMap()
        extensions.configure(parameters)
        profile, value = extensions.set(
            HeaderExtensions(mid=parameters.muxId, abs_send_time=SEND_TIME_MARK)
        )
        block = _EXTENSION.pack(profile, len(value) >> 2) + value if value else b""
        # version 2, extension bit
        self._head = bytes([0x90 if block else 0x80]) + bytes(11) + block
        mark = block.find(SEND_TIME_MARK.to_bytes(3, "big"))
        self._send_time_at = 12 + mark if mark >= 0 else -1

    def accepts(self, codec: str) -> bool:
        """Whether the subscriber negotiated `codec` (lower-case mime type) for this slot."""
        return codec in self._payload_types

    def connection(self) -> Connection | None:
        """The ICE pair's socket and address, the SRTP session to protect with and the DTLS
        transport's counters, once connected."""
        dtls = self._sender.transport
        if self._payload_type is None or dtls._state is not DtlsState.CONNECTED:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return None
        udp = pair.protocol.transport
        if udp is None:
            return None
        target = self._target
        if (
            target is None
            or target.udp is not udp
            or target.session is not dtls._tx_srtp
            or target.address != pair.remote_addr
        ):
            target = self._target = self._fanout.target(
                udp, pair.remote_addr, dtls._tx_srtp, vars(dtls)
            )
        return target

    def _send(
        self,
        connection: Connection,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        send_time: int | None,
        now: float,
    ) -> None:
        """One RTP packet (`payload_type` carries the marker bit) out on `connection`;
        `send_time` is the publisher's abs-send-time, or None to stamp `now`."""
        at = self._send_time_at
        if send_time is None:
            send_time = (ntp_at(now) >> 14) & 0xFFFFFF if at >= 0 else 0  # 6.18 fixed point
        # The fanout also keeps the DTLS transport's own counters, as its `_send_rtp` does.
        self._fanout.send(
            connection,
            (self._head, at, payload_type, sequence, timestamp, ssrc, payload, send_time),
        )

    def write(
        self, sequence: int, timestamp: int, packet: MediaPacket, connection: Connection
    ) -> None:
        """Send `packet`'s payload now as `sequence` at `timestamp`, on `connection` (from
        `connection()`)."""
        timestamp = (self._timestamp_origin + timestamp) & 0xFFFFFFFF
        marker = 0x80 if packet.marker else 0
        payload = packet.payload
        now = time.time()
        payload_type, rtx_payload_type = self._payload_types.get(
            packet.codec, (self._payload_type or 0, self._rtx_payload_type)
        )
        self._send(
            connection,
            marker | payload_type,
            sequence,
            timestamp,
            self._sender._ssrc,
            payload,
            packet.send_time,
            now,
        )
        self._history[sequence % HISTORY_SIZE] = (
            sequence,
            marker,
            timestamp,
            payload,
            packet.send_time,
            payload_type,
            rtx_payload_type,
        )
        self.packets_sent += 1
        # What aiortc's sender reports (RTCP SR, its stats).
        reported = self._reported
        reported[SENDER_NTP_TIMESTAMP] = ntp_at(now)
        reported[SENDER_RTP_TIMESTAMP] = timestamp
        reported[SENDER_OCTET_COUNT] += len(payload)
        reported[SENDER_PACKET_COUNT] += 1

    async def _retransmit(self, sequence: int) -> None:
        """Answer a NACK: the packet again, as RTX when negotiated (RFC 4588)."""
        entry = self._history[sequence % HISTORY_SIZE]
        connection = self.connection()
        if entry is None or entry[0] != sequence or connection is None:
            return
        _, marker, timestamp, payload, send_time, payload_type, rtx_payload_type = entry
        if rtx_payload_type is None:
            ssrc = self._sender._ssrc
        else:
            payload_type, ssrc = rtx_payload_type, self._sender._rtx_ssrc
            payload = _OSN.pack(sequence) + payload
            sequence = self._rtx_sequence
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        self._counters.retransmissions += 1
        self._send(
            connection,
            marker | payload_type,
            sequence,
            timestamp,
            ssrc,
            payload,
            send_time,
            time.time(),
        )
