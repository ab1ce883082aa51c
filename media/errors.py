"""Errors of the media engine."""


class MediaError(Exception):
    code = "media-error"


class SeamMoved(MediaError):
    """aiortc's private seams that forwarding relies on are not where this code expects them."""

    code = "media-seam-moved"


class NegotiationFailed(MediaError):
    code = "negotiation-failed"
