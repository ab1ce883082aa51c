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
    #: NACK messages sent to publishers, and packets sent again on subscribers' NACKs.
    nacks_sent: int = 0
    retransmissions: int = 0
    #: Subscribers' keyframe requests (PLI/FIR) for forwarded video.
    keyframe_requests_received: int = 0
    #: RTP packets and payload bytes sent to subscribers by peers since closed (the live ones'
    #: are read from their senders when asked: media.stats).
    packets_forwarded_closed: int = 0
    bytes_forwarded_closed: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
