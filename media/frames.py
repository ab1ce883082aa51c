"""The unit the SFU forwards: one RTP packet of a publisher's stream, as its encoder made it,
and where a video keyframe starts in VP8 (RFC 7741) and H264 (RFC 6184) payloads."""

from collections.abc import Callable
from dataclasses import dataclass

#: RTP clock rates of the codecs the SFU forwards (VP8 or H264 video, Opus audio).
CLOCK_RATE = {"video": 90_000, "audio": 48_000}

#: Nominal timestamp step between frames, used when a down track switches source.
FRAME_STEP = {"video": 3_000, "audio": 960}


@dataclass(slots=True)
class MediaPacket:
    """A publisher's packet (a retransmission already unwrapped), shared by every subscriber."""

    sequence: int
    timestamp: int
    marker: bool
    payload: bytes
    #: The publisher's abs-send-time (24 bits), passed on so that subscribers' bandwidth
    #: estimates measure the whole path from the publisher; None when it sent none.
    send_time: int | None
    #: The first packet of a keyframe (every Opus packet: audio needs no keyframe).
    keyframe_start: bool
    #: The last packet of a frame (the RTP marker for video; every Opus packet).
    frame_end: bool
    #: The codec (lower-case mime type, "video/h264"); "" for the down slot's first codec.
    codec: str = ""


def is_vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame."""
    return len(data) > 0 and (data[0] & 0x01) == 0


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether an RTP payload (RFC 7741) starts a VP8 keyframe: the descriptor's start bit with
    partition 0, and the frame tag's key frame bit right after the descriptor."""
    if len(payload) < 2:
        return False
    first = payload[0]
    if first & 0x1F != 0x10:  # S set, PID 0
        return False
    pos = 1
    if first & 0x80:  # X: extension byte
        extension = payload[1]
        pos = 2
        if extension & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= len(payload):
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            pos += 1
        if extension & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    return pos < len(payload) and payload[pos] & 0x01 == 0


#: H264 NAL unit types (RFC 6184): an IDR slice, a sequence parameter set, and the two
#: packetizations that carry several NAL units or a fragment of one.
H264_IDR = 5
H264_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def h264_keyframe_start(payload: bytes) -> bool:
    """Whether an RTP payload (RFC 6184) starts an H264 keyframe: it holds an IDR slice or the
    SPS that precedes one (alone or in a STAP-A), or is the first fragment (FU-A) of an IDR."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == H264_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if size and payload[pos + 2] & 0x1F in (H264_IDR, H264_SPS):
                return True
            pos += 2 + size
        return False
    if nal_type == H264_FU_A:
        return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == H264_IDR
    return nal_type in (H264_IDR, H264_SPS)


def keyframe_start_for(codec: str) -> Callable[[bytes], bool]:
    """The keyframe test for a video codec (lower-case mime type)."""
    return h264_keyframe_start if codec == "video/h264" else vp8_keyframe_start
