"""The codecs the SFU forwards: VP8 or H264 video, Opus audio. Nothing is transcoded, so a
subscriber is sent the publisher's codec and must be able to decode it (media.peer picks, per
publisher, a codec that everyone in the room can decode)."""

from collections.abc import Sequence

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

#: In order of preference: VP8 first (every browser but some Safaris decodes it), then H264.
FORWARDED_MIME_TYPES = {
    "video": ("video/VP8", "video/H264", "video/rtx"),
    "audio": ("audio/opus",),
}
RTX = "video/rtx"


def codec_preferences(
    kind: str, mime_types: Sequence[str] | None = None
) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities for `kind` among `mime_types` (all forwarded ones by default), in
    the order of `mime_types`; RTX comes along with video whenever it is offered."""
    wanted = [m.lower() for m in (mime_types or FORWARDED_MIME_TYPES[kind])]
    if kind == "video" and RTX not in wanted:
        wanted.append(RTX)
    capabilities = [c for c in RTCRtpSender.getCapabilities(kind).codecs]
    return [c for m in wanted for c in capabilities if c.mimeType.lower() == m]
