"""The direct receive path's pieces: reading RTP headers and SRTP with one copy each way."""

from __future__ import annotations

import os
import struct

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from media.directreceive import parse_rtp
from media.srtp import FastSrtp

ABS_SEND_TIME_ID = 3


def rtp(
    payload: bytes = b"\x10payload",
    *,
    marker: bool = False,
    csrcs: int = 0,
    extension: bytes | None = None,
    padding: int = 0,
    version: int = 2,
    sequence: int = 4242,
) -> bytes:
    first = (version << 6) | (0x20 if padding else 0) | (0x10 if extension else 0) | csrcs
    data = struct.pack("!BBHLL", first, (0x80 if marker else 0) | 96, sequence, 90_000, 0xCAFE)
    data += b"".join(struct.pack("!L", 7 + i) for i in range(csrcs))
    if extension is not None:
        data += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    data += payload
    if padding:
        data += bytes(padding - 1) + bytes([padding])
    return data


def one_byte_extensions(*elements: tuple[int, bytes]) -> bytes:
    block = b"".join(bytes([(ident << 4) | (len(value) - 1)]) + value for ident, value in elements)
    return block + bytes(-len(block) % 4)


def test_the_header_fields_and_payload_are_read() -> None:
    packet = parse_rtp(rtp(b"\x10frame", marker=True), ABS_SEND_TIME_ID)
    assert packet is not None
    assert (packet.ssrc, packet.payload_type, packet.sequence_number) == (0xCAFE, 96, 4242)
    assert (packet.timestamp, packet.marker, packet.payload) == (90_000, 1, b"\x10frame")
    assert packet.send_time is None


def test_the_abs_send_time_is_found_among_other_extensions_and_csrcs_are_skipped() -> None:
    extension = one_byte_extensions((1, b"0"), (ABS_SEND_TIME_ID, b"\x12\x34\x56"), (5, b"\x01"))
    packet = parse_rtp(rtp(b"\x10frame", csrcs=2, extension=extension), ABS_SEND_TIME_ID)
    assert packet is not None
    assert packet.send_time == 0x123456
    assert packet.payload == b"\x10frame"
    # Not negotiated: the same bytes are not taken for a send time.
    unnegotiated = parse_rtp(rtp(b"\x10frame", extension=extension), None)
    assert unnegotiated is not None and unnegotiated.send_time is None


def test_padding_is_not_forwarded() -> None:
    packet = parse_rtp(rtp(b"\x10frame", padding=4), ABS_SEND_TIME_ID)
    assert packet is not None and packet.payload == b"\x10frame"
    padding_only = parse_rtp(rtp(b"", padding=200), ABS_SEND_TIME_ID)
    assert padding_only is not None and padding_only.payload == b""


@pytest.mark.parametrize(
    "data",
    [
        rtp()[:11],  # shorter than a header
        rtp(version=1),
        rtp(csrcs=15)[:20],  # CSRCs cut off
        rtp(b"", extension=one_byte_extensions((1, b"abc")))[:14],  # extension header cut off
        struct.pack("!BBHLL", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 9),  # block short
        rtp(b"\x10frame", padding=4)[:-1] + b"\x00",  # padding length 0
        rtp(b"\x10frame", padding=4)[:-1] + b"\xff",  # more padding than the packet
    ],
)
def test_a_malformed_packet_is_refused(data: bytes) -> None:
    assert parse_rtp(data, ABS_SEND_TIME_ID) is None


def sessions() -> tuple[Session, Session]:
    key = os.urandom(30)
    outbound = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    inbound = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))
    return outbound, inbound


def test_fast_srtp_protects_what_pylibsrtp_unprotects_and_back() -> None:
    outbound, inbound = sessions()
    header, payload = rtp(b"")[:12], os.urandom(1000)
    protected = FastSrtp(outbound).protect(header, payload)
    assert protected != header + payload
    assert inbound.unprotect(protected) == header + payload

    outbound, inbound = sessions()
    protected = outbound.protect(header + payload)
    assert FastSrtp(inbound).unprotect(protected) == header + payload


def test_fast_srtp_refuses_a_replay_a_forgery_and_an_oversize_packet() -> None:
    outbound, inbound = sessions()
    receiving = FastSrtp(inbound)
    protected = FastSrtp(outbound).protect(rtp(b"")[:12], b"\x10frame")
    receiving.unprotect(protected)
    with pytest.raises(pylibsrtp.Error):
        receiving.unprotect(protected)  # the same index again
    forged = bytearray(FastSrtp(outbound).protect(rtp(b"", sequence=4243)[:12], b"\x10frame"))
    forged[-1] ^= 0xFF
    with pytest.raises(pylibsrtp.Error):
        receiving.unprotect(bytes(forged))
    with pytest.raises(ValueError, match="too long"):
        FastSrtp(outbound).protect(rtp(b"")[:12], bytes(1500))
