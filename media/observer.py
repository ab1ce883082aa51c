"""How the media engine tells the layer above what happened, without knowing that layer."""

from typing import Protocol


class RoomObserver(Protocol):
    def tracks_changed(self, participant: str) -> None:
        """The mapping of `participant`'s receiving slots (mid -> publisher) changed."""

    def renegotiation_needed(self, participant: str, recv: dict[str, int]) -> None:
        """`participant` must offer again with at least `recv[kind]` receive-only transceivers."""

    def first_frame(self, participant: str, kind: str) -> None:
        """The first frame of `participant`'s `kind` track reached the server."""

    def first_frame_delivered(self, participant: str, kind: str) -> None:
        """The first frame of `kind` was sent down to `participant`."""

    def peer_state_changed(self, participant: str, state: str) -> None:
        """The participant's peer connection moved to `state` (connected, failed, closed...)."""

    def video_unsupported(self, participant: str, publisher: str, codec: str) -> None:
        """`participant` cannot decode `publisher`'s video codec (`codec`, say "H264"), and no
        codec that everyone decodes is left to switch to: that video will not reach them."""

    def source_changed(self, participant: str, source: str, on: bool) -> None:
        """`participant` started (`on`) or stopped publishing a transient source: a shared
        screen or a second camera (media.sources)."""
