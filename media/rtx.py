"""Routes retransmissions (RTX) to their receiver on a bundled transport with several receivers.

aiortc 1.16's `RtpRouter` knows a receiver by its media SSRCs only: an RTX packet (its own SSRC)
is routed by payload type, and only when exactly one receiver has that payload type. With two or
more video receivers on one bundled transport every retransmission was dropped, so a lost packet
stalled the video jitter buffer for its whole 512 packets. Registering each receiver's RTX SSRC
(known from the remote description's FID group) fixes that.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters

#: Marks a transport whose receiver registration already adds RTX SSRCs.
_PATCHED = "_screenvisit_routes_rtx"


def route_rtx(transport: RTCDtlsTransport) -> None:
    """Make `transport` route each receiver's RTX SSRC to it (idempotent). Call before the
    receivers start, i.e. before setRemoteDescription."""
    if getattr(transport, _PATCHED, False):
        return
    register = transport._register_rtp_receiver
    router = transport._rtp_router

    def register_with_rtx(receiver: Any, parameters: RTCRtpReceiveParameters) -> None:
        register(receiver, parameters)
        for encoding in parameters.encodings:
            if encoding.rtx is not None:
                router.ssrc_table[encoding.rtx.ssrc] = receiver

    setattr(transport, "_register_rtp_receiver", register_with_rtx)  # noqa: B010
    setattr(transport, _PATCHED, True)


def route_rtx_for(pc: RTCPeerConnection) -> None:
    """`route_rtx` for every transport of `pc`'s transceivers."""
    for transceiver in pc.getTransceivers():
        route_rtx(transceiver.receiver.transport)
