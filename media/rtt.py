"""The round trip to a peer, as aiortc measures it: each sender's RTCP receiver reports carry
the time since its last sender report (LSR/DLSR), and the sender keeps a smoothed RTT of them.
aiortc keeps it private (`RTCRtpSender.__rtt`; media.seams checks it is still there)."""

from __future__ import annotations

from aiortc import RTCPeerConnection

#: The name mangling of RTCRtpSender.__rtt.
SENDER_RTT_ATTR = "_RTCRtpSender__rtt"


def peer_rtt(pc: RTCPeerConnection) -> float | None:
    """The smallest smoothed round trip (seconds) any sender of `pc` has measured, or None."""
    measured = [
        rtt
        for sender in pc.getSenders()
        if isinstance(rtt := getattr(sender, SENDER_RTT_ATTR, None), float | int) and rtt > 0
    ]
    return float(min(measured)) if measured else None
