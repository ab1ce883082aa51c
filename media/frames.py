"""The unit the SFU forwards: one complete encoded frame, as the publisher's encoder made it."""

from dataclasses import dataclass

#: RTP clock rates of the codecs the SFU forwards (VP8 video, Opus audio).
CLOCK_RATE = {"video": 90_000, "audio": 48_000}

#: Nominal timestamp step between frames, used when a down track switches source.
FRAME_STEP = {"video": 3_000, "audio": 960}


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    data: bytes
    timestamp: int
    keyframe: bool


def is_vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame."""
    return len(data) > 0 and (data[0] & 0x01) == 0
