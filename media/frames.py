"""The unit the SFU forwards: one RTP packet of a publisher's stream, as its encoder made it."""

from dataclasses import dataclass

#: RTP clock rates of the codecs the SFU forwards (VP8 video, Opus audio).
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
    #: The first packet of a VP8 keyframe (every Opus packet: audio needs no keyframe).
    keyframe_start: bool
    #: The last packet of a frame (the RTP marker for video; every Opus packet).
    frame_end: bool


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
