"""The weakest subscriber's bandwidth estimate caps what a publisher sends (REMB, RFC draft
alvestrand-rmcat-remb).

Without transport-cc, Chromium (and aiortc) estimate the bandwidth they receive and send it back
as REMB. At the SFU each subscriber's REMB reaches the sender that serves it, where aiortc only
sets that sender's own encoder's target (the forwarding SFU has no encoder to slow down). The
publisher hears only the REMB of the server's receiver, which measures the path from publisher
to server, not the paths onward. So:

- `watch_remb(sender, report)`: tells `report` every bitrate a subscriber's REMB announces;
- `RembLimiter(receiver, cap)`: every REMB the server's receiver sends to its publisher is
  lowered to `cap()` (the weakest subscriber's latest estimate), and `tighten` sends one at once
  when the cap drops, so the publisher does not wait for the receiver's next estimate.

aiortc's receiver sends a REMB for every video packet while its estimator sees overuse, which on
a busy server is most of the time: in the forwarding benchmark 11,169 REMBs went out for 11,491
video packets, each one protected, sent and handled by the publisher. `RembThrottle` keeps what
libwebrtc's packet router does: one REMB per 200 ms, sooner only when the estimate drops by more
than 3 %.

`send_remb` is a subscriber's side: how a peer announces an estimate (tests, probes).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci

#: At most one REMB per this many seconds to a publisher...
REMB_INTERVAL_SECONDS = 0.2
#: ...unless the estimate falls below this share of the last one sent.
REMB_DROP_RATIO = 0.97

#: The receiver's own RTCP SSRC (name-mangled); media.seams checks it at start-up.
RTCP_SSRC_ATTR = "_RTCRtpReceiver__rtcp_ssrc"


def remb_bitrate(packet: Any) -> tuple[int, list[int]] | None:
    """(bitrate in bit/s, media SSRCs) of a REMB packet, None for any other RTCP packet."""
    if not isinstance(packet, RtcpPsfbPacket) or packet.fmt != RTCP_PSFB_APP:
        return None
    try:
        bitrate, ssrcs = unpack_remb_fci(packet.fci)
    except ValueError:
        return None  # another application-layer feedback message
    return bitrate, ssrcs


def remb_packet(rtcp_ssrc: int, bitrate: int, media_ssrcs: list[int]) -> RtcpPsfbPacket:
    """A REMB from `rtcp_ssrc` announcing `bitrate` for the streams `media_ssrcs`."""
    return RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, media_ssrcs)
    )


def watch_remb(sender: RTCRtpSender, report: Callable[[int], None]) -> None:
    """Call `report(bitrate)` for every REMB the subscriber sends about `sender`'s stream."""
    handle: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        remb = remb_bitrate(packet)
        if remb is not None:
            report(remb[0])
        await handle(packet)

    setattr(sender, "_handle_rtcp_packet", handle_rtcp_packet)  # noqa: B010


class RembThrottle:
    """Decides which estimates to send: the first, then one per interval, or a drop at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_bitrate: int | None = None
        self._last_at = 0.0

    def admit(self, bitrate: int) -> bool:
        """Whether to send a REMB announcing `bitrate` now; if so, it counts as sent."""
        now = self._clock()
        last = self._last_bitrate
        if (
            last is not None
            and now - self._last_at < REMB_INTERVAL_SECONDS
            and bitrate >= last * REMB_DROP_RATIO
        ):
            return False
        self._last_bitrate = bitrate
        self._last_at = now
        return True


class RembLimiter:
    """Lowers every REMB `receiver` sends to its publisher to `cap()`, when there is one, sends
    them no more often than `throttle` admits, and sends one at once (`tighten`) when the cap
    drops below what the publisher was last told."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        cap: Callable[[], int | None],
        throttle: RembThrottle | None = None,
    ) -> None:
        self._receiver = receiver
        self._cap = cap
        self._throttle = throttle or RembThrottle()
        self._send: Callable[[Any], Awaitable[None]] = receiver._send_rtcp
        #: The receiver's own latest estimate of the publisher's uplink (bit/s).
        self.estimate: int | None = None
        setattr(receiver, "_send_rtcp", self._send_rtcp)  # noqa: B010

    async def _send_rtcp(self, packet: Any) -> None:
        remb = remb_bitrate(packet)
        if remb is not None:
            self.estimate = remb[0]
            limit = self._cap()
            bitrate = remb[0] if limit is None else min(limit, remb[0])
            if not self._throttle.admit(bitrate):
                return
            if bitrate != remb[0]:
                packet = remb_packet(packet.ssrc, bitrate, remb[1])
        await self._send(packet)

    async def tighten(self, media_ssrc: int) -> None:
        """The cap dropped: tell the publisher now, unless its own estimate is lower still."""
        limit = self._cap()
        rtcp_ssrc = getattr(self._receiver, RTCP_SSRC_ATTR, None)
        if limit is None or rtcp_ssrc is None:
            return  # nothing to cap, or not started: the first estimate will be capped
        if self.estimate is not None and self.estimate <= limit:
            return
        if not self._throttle.admit(limit):
            return
        await self._send(remb_packet(rtcp_ssrc, limit, [media_ssrc]))


def throttle_remb(receiver: RTCRtpReceiver, throttle: RembThrottle | None = None) -> None:
    """Let `receiver`'s own REMBs out only as `throttle` admits them, as a browser's would be
    (the bots and test clients receive with aiortc, and should load the server as browsers do)."""
    gate = throttle or RembThrottle()
    send: Callable[[Any], Awaitable[None]] = receiver._send_rtcp

    async def send_rtcp(packet: Any) -> None:
        remb = remb_bitrate(packet)
        if remb is None or gate.admit(remb[0]):
            await send(packet)

    setattr(receiver, "_send_rtcp", send_rtcp)  # noqa: B010


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, media_ssrc: int) -> None:
    """Send a REMB of `bitrate` about the stream `media_ssrc` from `receiver` now."""
    rtcp_ssrc = getattr(receiver, RTCP_SSRC_ATTR, None)
    if rtcp_ssrc is None:
        raise RuntimeError("the receiver has not started: it has no RTCP SSRC yet")
    await receiver._send_rtcp(remb_packet(rtcp_ssrc, bitrate, [media_ssrc]))
