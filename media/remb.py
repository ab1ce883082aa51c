"""The weakest subscriber's bandwidth estimate caps what a publisher sends (REMB, RFC draft
alvestrand-rmcat-remb).

Without transport-cc, Chromium (and aiortc) estimate the bandwidth they receive and send it back
as REMB. At the SFU each subscriber's REMB reaches the sender that serves it, where aiortc only
sets that sender's own encoder's target (the forwarding SFU has no encoder to slow down).
Forwarded packets keep the publisher's abs-send-time (media.rtpwriter), so a subscriber's
estimate measures the whole path from the publisher to it; the server makes no estimate of its
own (media.uptrack switches aiortc's off), and the publisher hears the weakest subscriber's:

- `watch_remb(sender, report)`: tells `report` every bitrate a subscriber's REMB announces;
- `RembThrottle`: what libwebrtc's packet router does: one REMB per 200 ms to a publisher,
  sooner only when the estimate drops by more than 3 % (aiortc's receivers send one per packet
  while they see overuse);
- `throttle_remb`: the same for an aiortc receiver's own REMBs (bots and test clients, which
  should load the server as browsers do);
- `send_remb`: how a receiver announces an estimate (the server to a publisher; tests);
- `PublisherRemb`: a browser takes each REMB as the cap of everything it sends, so a publisher
  with more than one video track (a camera and a shared screen) hears one estimate: the sum of
  each track's, a track nobody has estimated yet counting as `START_BITRATE`. Without that the
  camera's estimate would cap the screen too, and the screen's encoder would get no bitrate
  at all (its subscribers estimate nothing before its first packets: a deadlock).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci

#: At most one REMB per this many seconds to a publisher...
REMB_INTERVAL_SECONDS = 0.2
#: ...unless the estimate falls below this share of the last one sent.
REMB_DROP_RATIO = 0.97

#: What a published video track nobody has estimated yet may send (Chromium's start bitrate).
START_BITRATE = 300_000

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


def throttle_remb(receiver: RTCRtpReceiver, throttle: RembThrottle | None = None) -> None:
    """Let `receiver`'s own REMBs out only as `throttle` admits them, as a browser's would be
    (the bots and test clients receive with aiortc)."""
    gate = throttle or RembThrottle()
    send: Callable[[Any], Awaitable[None]] = receiver._send_rtcp

    async def send_rtcp(packet: Any) -> None:
        remb = remb_bitrate(packet)
        if remb is None or gate.admit(remb[0]):
            await send(packet)

    setattr(receiver, "_send_rtcp", send_rtcp)  # noqa: B010


async def send_remb(
    receiver: RTCRtpReceiver, bitrate: int, media_ssrc: int | Sequence[int]
) -> None:
    """Send a REMB of `bitrate` about the stream(s) `media_ssrc` from `receiver` now."""
    rtcp_ssrc = getattr(receiver, RTCP_SSRC_ATTR, None)
    if rtcp_ssrc is None:
        raise RuntimeError("the receiver has not started: it has no RTCP SSRC yet")
    ssrcs = [media_ssrc] if isinstance(media_ssrc, int) else list(media_ssrc)
    await receiver._send_rtcp(remb_packet(rtcp_ssrc, bitrate, ssrcs))


class PublisherRemb:
    """The estimates of one publisher's published video tracks, announced as one (see above)."""

    def __init__(self) -> None:
        #: published track -> its subscribers' weakest estimate (None: none yet)
        self._caps: dict[object, int | None] = {}
        self.throttle = RembThrottle()

    def published(self, track: object, on: bool) -> None:
        if on:
            self._caps.setdefault(track, None)
        else:
            self._caps.pop(track, None)

    def estimate(self, track: object, bitrate: int) -> int | None:
        """Record `track`'s estimate; the total to announce, or None while no track has one."""
        if track not in self._caps:
            return None  # not published (any more): its estimate caps nothing
        self._caps[track] = bitrate
        return sum(START_BITRATE if cap is None else cap for cap in self._caps.values())

    def tracks(self) -> list[object]:
        return list(self._caps)
