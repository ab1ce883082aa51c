"""The media engine's totals, read when asked (a metrics scrape), never counted per packet."""

from __future__ import annotations

from media.sfu import Sfu


def forwarded(sfu: Sfu) -> tuple[int, int]:
    """RTP packets and payload bytes sent to subscribers since the process started."""
    packets = sfu.counters.packets_forwarded_closed
    octets = sfu.counters.bytes_forwarded_closed
    for room in sfu.rooms.values():
        for peer in room.peers.values():
            sent_packets, sent_octets = peer.sent()
            packets += sent_packets
            octets += sent_octets
    return packets, octets
