"""Whether media still arrives from a participant: the packets (DTLS, SRTP, SRTCP) its peer
connection has received, sampled now and then. A publishing browser sends RTP all the time
(silence and black frames when muted) and RTCP reports for what it receives, so a count that
stands still for seconds means its network path died, long before ICE consent gives up.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc.stats import RTCTransportStats

from media.peer import MediaPeer


async def packets_received(peer: MediaPeer) -> int:
    """Packets the peer's transport has received from its participant so far."""
    report = await peer.pc.getStats()
    return sum(
        stats.packetsReceived for stats in report.values() if isinstance(stats, RTCTransportStats)
    )


class MediaWatch:
    """Since when each participant's peer has received nothing (by `clock`, in seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        #: participant -> (peer, packets received, when that count was first seen, and whether
        #: the count ever grew between two looks: media flowed, beyond the handshake)
        self._seen: dict[str, tuple[MediaPeer, int, float, bool]] = {}

    async def silent_for(self, participant: str, peer: MediaPeer) -> float:
        """Seconds the peer has received nothing since media last flowed; 0 while it is not
        connected, publishes nothing, or never sent media (then it need not send anything)."""
        now = self._clock()
        if peer.pc.connectionState != "connected" or not peer.up:
            self._seen.pop(participant, None)
            return 0.0
        received = await packets_received(peer)
        seen = self._seen.get(participant)
        if seen is None or seen[0] is not peer:
            self._seen[participant] = (peer, received, now, False)
            return 0.0
        if received != seen[1]:
            self._seen[participant] = (peer, received, now, True)
            return 0.0
        return now - seen[2] if seen[3] else 0.0

    def paused(self, gap: float) -> None:
        """This process could not look for `gap` seconds (a stalled event loop): what it did
        not read meanwhile is no sign of death, so every silence starts again."""
        self._seen = {p: (e[0], e[1], e[2] + gap, e[3]) for p, e in self._seen.items()}

    def forget(self, participant: str) -> None:
        self._seen.pop(participant, None)
