"""Takes complete encoded frames from an RTCRtpReceiver instead of letting them be decoded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aiortc.rtcrtpreceiver import RTCRtpReceiver

# The name mangling of RTCRtpReceiver.__decoder_queue; media.seams checks it at start-up.
DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"

FrameSink = Callable[[Any, Any], None]


class EncodedFrameTap:
    """Stands in for the receiver's decoder queue (a `queue.Queue`).

    `put` is called on the event loop by `_handle_rtp_packet` with `(codec, JitterFrame)`; we hand
    the frame to `sink` there and then. The receiver's decoder thread blocks in `get` until the
    receiver stops (it puts None), so it never sees a frame and never decodes.
    """

    def __init__(self, sink: FrameSink) -> None:
        self._sink = sink
        self._stopped = threading.Event()

    def put(self, item: tuple[Any, Any] | None) -> None:
        if item is None:
            self._stopped.set()
            return
        self._sink(*item)

    def get(self) -> None:
        self._stopped.wait()
        return None


def install_tap(receiver: RTCRtpReceiver, sink: FrameSink) -> EncodedFrameTap:
    """Install before the receiver starts (before its `receive()`), i.e. right after
    setRemoteDescription, or its decoder thread will already hold the original queue."""
    tap = EncodedFrameTap(sink)
    setattr(receiver, DECODER_QUEUE_ATTR, tap)
    return tap
