"""A peer's real network path, made worse: what it sends on its ICE socket loses packets.

The link wraps the socket transport of the peer's nominated ICE pair, below SRTP, so it sees
exactly the datagrams that would reach the wire, from aiortc's senders and from the server's
`RtpWriter` alike. SRTP leaves RTP headers in the clear: the link picks packets by SSRC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiortc.rtp import is_rtcp


class Link:
    """Every `drop_every`-th RTP packet (of `ssrcs`, when given) is lost, and beyond
    `packets_per_second` (a policer with a burst of `burst` packets) the rest are lost too."""

    def __init__(
        self,
        dtls_transport: Any,
        ssrcs: set[int] | None = None,
        *,
        drop_every: int | None = None,
        packets_per_second: float | None = None,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        pair = dtls_transport.transport._connection._nominated[1]
        self._socket = pair.protocol.transport
        self._ssrcs = ssrcs
        self._drop_every = drop_every
        self._rate = packets_per_second
        self._burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self.sent = 0
        self.dropped = 0
        pair.protocol.transport = self

    def _lost(self, data: bytes) -> bool:
        if is_rtcp(data):
            return False
        if self._ssrcs is not None and int.from_bytes(data[8:12], "big") not in self._ssrcs:
            return False
        self.sent += 1
        if self._drop_every is not None and self.sent % self._drop_every == 0:
            return True
        if self._rate is not None:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                return True
            self._tokens -= 1
        return False

    def sendto(self, data: bytes, address: Any = None) -> None:
        if self._lost(data):
            self.dropped += 1
            return
        self._socket.sendto(data, address)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)
