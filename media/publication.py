"""One participant's audio or video as the room sees it: it outlives the publisher's reconnects.

Subscribers' down tracks attach to the publication, not to the current up track, so a publisher
who reloads the page comes back in the same tiles without the others renegotiating.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from media.frames import MediaPacket
from media.uptrack import UpTrack

if TYPE_CHECKING:
    from media.downtrack import DownTrack


class Publication:
    def __init__(self, participant: str, kind: str, slot: str | None = None) -> None:
        self.participant = participant
        self.kind = kind
        #: Its key in the room: "audio", "video", "screen" or "camera2" (media.sources).
        self.slot = slot or kind
        self.source: UpTrack | None = None
        self.subscribers: set[DownTrack] = set()

    def set_source(self, source: UpTrack | None) -> None:
        if self.source is source:
            return
        if self.source is not None:
            self.source.remove_sink(self.deliver)
            self.source.published(False)
        self.source = source
        for down in self.subscribers:
            down.source_changed()
        if source is not None:
            source.add_sink(self.deliver)
            source.published(True)
            if self.subscribers:
                source.request_keyframe()

    def deliver(self, packet: MediaPacket) -> None:
        for down in self.subscribers:
            down.push(packet)

    def bitrate_cap(self) -> int | None:
        """The weakest subscriber's bandwidth estimate (bit/s): what the publisher may send."""
        estimates = [down.remb for down in self.subscribers if down.remb is not None]
        return min(estimates) if estimates else None

    def remb_changed(self) -> None:
        cap = self.bitrate_cap()
        if self.source is not None and cap is not None:
            self.source.cap_bitrate(cap)

    def request_keyframe(self) -> None:
        if self.source is not None:
            self.source.request_keyframe()

    def close(self) -> None:
        self.set_source(None)
        for down in list(self.subscribers):
            down.detach()
