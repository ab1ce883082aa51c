"""The codecs the SFU forwards. Every publisher and subscriber is held to the same ones."""

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

FORWARDED_MIME_TYPES = {"video": ("video/VP8", "video/rtx"), "audio": ("audio/opus",)}


def codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpSender.getCapabilities(kind)
    wanted = FORWARDED_MIME_TYPES[kind]
    return [c for c in capabilities.codecs if c.mimeType in wanted]
