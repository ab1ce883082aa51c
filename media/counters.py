"""Process-wide media counters, owned by the Sfu (not module state)."""

from dataclasses import dataclass


@dataclass
class MediaCounters:
    frames_received: int = 0
    frames_forwarded: int = 0
    frames_dropped: int = 0
    keyframe_requests_sent: int = 0
    keyframe_requests_merged: int = 0
    #: Publishers' RTP packets taken in the socket callback (media.directreceive)...
    packets_received_direct: int = 0
    #: ...and datagrams there refused: not authentic (forged, or replayed), or malformed RTP.
    packets_refused: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
