"""What a participant's published tracks are: a source kind per track, announced in signaling.

A participant publishes at most one track of each source. The microphone and the camera are
the defaults (the first sending audio or video m-line that the offer does not announce); a
shared screen and a second camera must be announced by mid (the offer's `sources`). Inside the
room a publication is keyed by its *slot*: "audio" and "video" for the defaults (as before
there were more), "screen" and "camera2" for the others.
"""

from __future__ import annotations

from media.errors import NegotiationFailed

MICROPHONE = "microphone"
CAMERA = "camera"
SCREEN = "screen"
CAMERA2 = "camera2"

#: source -> the media kind its track carries
SOURCE_KIND: dict[str, str] = {
    MICROPHONE: "audio",
    CAMERA: "video",
    SCREEN: "video",
    CAMERA2: "video",
}
SOURCES = frozenset(SOURCE_KIND)
#: source <-> the room's publication key ("audio"/"video" for the defaults)
SLOT_OF: dict[str, str] = {MICROPHONE: "audio", CAMERA: "video", SCREEN: SCREEN, CAMERA2: CAMERA2}
SOURCE_OF_SLOT: dict[str, str] = {slot: source for source, slot in SLOT_OF.items()}
#: The source of an unannounced sending m-line of each kind.
DEFAULT_SOURCE: dict[str, str] = {"audio": MICROPHONE, "video": CAMERA}
#: Sources that come and go within a connection (a share stops): an offer that no longer
#: sends them unpublishes them.
TRANSIENT = frozenset({SCREEN, CAMERA2})


def slot_kind(slot: str) -> str:
    """The media kind of a publication key."""
    return SOURCE_KIND[SOURCE_OF_SLOT[slot]]


class SourceForbidden(NegotiationFailed):
    """The participant may not publish this source (policy or the token's grant)."""

    code = "source-forbidden"

    def __init__(self, source: str) -> None:
        super().__init__(f"you may not publish a {source} track in this visit")
        self.source = source
