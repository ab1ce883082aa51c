"""Forwarded frames go out as RTP at once, from the packet handler that completed them.

aiortc's sender pulls each frame through its track's `recv()` in a task of its own, builds an
`RtpPacket` per payload, computes the header extensions and the send time (from `datetime`) for
every packet, and awaits four coroutines to reach the socket: in the forwarding benchmark that
path was a third of the server's CPU. `RtpWriter` does the same work synchronously, in the
caller's stack: one extension block per frame, struct-packed headers, SRTP, and `sendto` on the
ICE pair's socket. UDP never blocks, so a subscriber on a narrow link cannot hold anyone back;
what it cannot take is lost on its link, and its NACKs, PLIs and REMBs say so.

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
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap

from media.frames import EncodedFrame

#: Most a payload may carry (descriptor included), as aiortc's own packetiser.
PACKET_MAX = 1300
#: Packets kept for retransmission (a second of 1.2 Mbps video is about 120).
HISTORY_SIZE = 512
#: Seconds between 1900 (NTP) and 1970 (Unix).
NTP_EPOCH_OFFSET = 2_208_988_800

_HEADER = struct.Struct("!BBHLL")
_EXTENSION = struct.Struct("!HH")
_VP8_PICTURE_ID = struct.Struct("!BH")
_OSN = struct.Struct("!H")

SENDER_PREFIX = "_RTCRtpSender__"
DTLS_PREFIX = "_RTCDtlsTransport__"


def ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp."""
    return int((time.time() + NTP_EPOCH_OFFSET) * (1 << 32))


def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 payloads of one VP8 frame: a descriptor with a 15-bit picture id, the start bit
    on the first."""
    extension = _VP8_PICTURE_ID.pack(0x80, 0x8000 | picture_id)
    first, rest = b"\x90" + extension, b"\x80" + extension
    size = PACKET_MAX - len(first)
    payloads = [first + frame[:size]]
    for pos in range(size, len(frame), size):
        payloads.append(rest + frame[pos : pos + size])
    return payloads


class RtpWriter:
    """Sends one down slot's frames through `sender`'s transport, as `sender` would have."""

    def __init__(self, sender: RTCRtpSender, kind: str) -> None:
        self._sender = sender
        self._kind = kind
        self._payload_type: int | None = None
        self._rtx_payload_type: int | None = None
        self._extensions = HeaderExtensionsMap()
        self._mid: str | None = None
        self._sequence = random.randrange(1 << 15)  # as aiortc: no early wraparound
        self._rtx_sequence = random.randrange(1 << 15)
        self._timestamp_origin = random.randrange(1 << 32)
        self._picture_id = random.randrange(1 << 15)
        #: sequence % HISTORY_SIZE -> (sequence, marker, timestamp, payload)
        self._history: list[tuple[int, int, int, bytes] | None] = [None] * HISTORY_SIZE
        self.packets_sent = 0
        send: Callable[[RTCRtpSendParameters], Awaitable[None]] = sender.send

        async def send_noted(parameters: RTCRtpSendParameters) -> None:
            self._configure(parameters)
            await send(parameters)

        setattr(sender, "send", send_noted)  # noqa: B010
        setattr(sender, "_retransmit", self._retransmit)  # noqa: B010

    def _configure(self, parameters: RTCRtpSendParameters) -> None:
        codec = parameters.codecs[0]
        self._payload_type = codec.payloadType
        for other in parameters.codecs:
            if other.name.lower() == "rtx" and other.parameters.get("apt") == codec.payloadType:
                self._rtx_payload_type = other.payloadType
        self._mid = parameters.muxId
        self._extensions.configure(parameters)

    def _socket(self) -> tuple[RTCDtlsTransport, Any, tuple[str, int]] | None:
        """The DTLS transport and the ICE pair's socket and address, once connected."""
        dtls = self._sender.transport
        if self._payload_type is None or dtls.state != "connected":
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return None
        return dtls, pair.protocol.transport, pair.remote_addr

    @property
    def ready(self) -> bool:
        return self._socket() is not None

    def _extension_block(self, ntp: int) -> bytes:
        profile, value = self._extensions.set(
            HeaderExtensions(mid=self._mid, abs_send_time=(ntp >> 14) & 0xFFFFFF)
        )
        if not value:
            return b""
        return _EXTENSION.pack(profile, len(value) >> 2) + value

    def write(self, frame: EncodedFrame) -> bool:
        """Send `frame` now; False (nothing sent) while the subscriber is not connected."""
        connected = self._socket()
        if connected is None:
            return False
        dtls, udp, address = connected
        if self._kind == "video":
            payloads = vp8_payloads(frame.data, self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        else:
            payloads = [frame.data]
        ntp = ntp_now()
        extension = self._extension_block(ntp)
        first_byte = 0x90 if extension else 0x80
        timestamp = (self._timestamp_origin + frame.timestamp) & 0xFFFFFFFF
        ssrc = self._sender._ssrc
        protect = dtls._tx_srtp.protect
        payload_type = self._payload_type or 0  # set: the writer is connected
        sequence = self._sequence
        last = len(payloads) - 1
        sent_bytes = 0
        octets = 0
        for index, payload in enumerate(payloads):
            marker = 0x80 if index == last else 0
            header = _HEADER.pack(first_byte, marker | payload_type, sequence, timestamp, ssrc)
            datagram = protect(header + extension + payload)
            udp.sendto(datagram, address)
            self._history[sequence % HISTORY_SIZE] = (sequence, marker, timestamp, payload)
            sent_bytes += len(datagram)
            octets += len(payload)
            sequence = (sequence + 1) & 0xFFFF
        self._sequence = sequence
        self.packets_sent += len(payloads)
        # What aiortc's sender reports (RTCP SR, its stats) and its transport counts.
        sender = self._sender
        setattr(sender, SENDER_PREFIX + "ntp_timestamp", ntp)
        setattr(sender, SENDER_PREFIX + "rtp_timestamp", timestamp)
        _add(sender, SENDER_PREFIX + "octet_count", octets)
        _add(sender, SENDER_PREFIX + "packet_count", len(payloads))
        _count_sent(dtls, len(payloads), sent_bytes)
        return True

    async def _retransmit(self, sequence: int) -> None:
        """Answer a NACK: the packet again, as RTX when negotiated (RFC 4588)."""
        entry = self._history[sequence % HISTORY_SIZE]
        connected = self._socket()
        if entry is None or entry[0] != sequence or connected is None:
            return
        dtls, udp, address = connected
        _, marker, timestamp, payload = entry
        extension = self._extension_block(ntp_now())
        first_byte = 0x90 if extension else 0x80
        assert self._payload_type is not None
        if self._rtx_payload_type is None:
            header = _HEADER.pack(
                first_byte, marker | self._payload_type, sequence, timestamp, self._sender._ssrc
            )
        else:
            header = _HEADER.pack(
                first_byte,
                marker | self._rtx_payload_type,
                self._rtx_sequence,
                timestamp,
                self._sender._rtx_ssrc,
            )
            payload = _OSN.pack(sequence) + payload
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        datagram = dtls._tx_srtp.protect(header + extension + payload)
        udp.sendto(datagram, address)
        _count_sent(dtls, 1, len(datagram))


def _add(target: object, attr: str, value: int) -> None:
    setattr(target, attr, getattr(target, attr) + value)


def _count_sent(dtls: RTCDtlsTransport, packets: int, sent_bytes: int) -> None:
    """The DTLS transport's own counters, as its `_send_rtp` keeps them."""
    _add(dtls, DTLS_PREFIX + "tx_packets", packets)
    _add(dtls, DTLS_PREFIX + "tx_bytes", sent_bytes)
