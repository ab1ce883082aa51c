"""Keyframe requests to one publisher (RTCP PLI), at most one per interval: a request made
while one is pending merges into it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver

from media.counters import MediaCounters
from media.tasks import OwnedTasks

#: At most one keyframe request per publisher per this many seconds; requests in between merge.
KEYFRAME_REQUEST_INTERVAL = 0.5


class KeyframeRequests:
    def __init__(
        self,
        receiver: RTCRtpReceiver,
        media_ssrc: Callable[[], int | None],
        tasks: OwnedTasks,
        counters: MediaCounters,
    ) -> None:
        self._receiver = receiver
        self._media_ssrc = media_ssrc
        self._tasks = tasks
        self._counters = counters
        self._last_request = 0.0
        self._pending = False

    def request(self) -> None:
        """Ask for a keyframe: at once, or merged into the next allowed slot."""
        if self._pending:
            self._counters.keyframe_requests_merged += 1
            return
        wait = self._last_request + KEYFRAME_REQUEST_INTERVAL - time.monotonic()
        self._pending = True
        self._tasks.spawn(self._send_pli(max(wait, 0.0)))

    async def _send_pli(self, delay: float) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            ssrc = self._media_ssrc()
            if ssrc is not None:
                self._last_request = time.monotonic()
                self._counters.keyframe_requests_sent += 1
                await self._receiver._send_rtcp_pli(ssrc)
        finally:
            self._pending = False
