"""The baseline media mode: aiortc's MediaRelay, decoding each publisher once and encoding again
for every subscriber (`SCREENVISIT_MEDIA_MODE=relay`, `serve --media-mode relay`).

Forwarding encoded frames (`forward`, the default: media/tap.py, media/downtrack.py) is measured
against this (bench/media_forwarding.py); ARCHITECTURE.md has the figures that made us choose it.

    publisher's RTCRtpReceiver, not tapped: its decoder thread decodes every frame
      -> RelayUpTrack        drains the receiver's track, counts frames, reports the first one
      -> RelayPublication    one per publication (it outlives the publisher's reconnects):
           .track            the decoded frames, timestamps continuous across reconnects
           .relay            one aiortc MediaRelay; one `relay.subscribe(.track)` per subscriber
      -> RelayDownTrack      the down slot's track, as in forward mode one per slot, fed by its
                             current relay subscription
      -> RTCRtpSender        gets decoded frames, so aiortc encodes them: once per subscriber

The slot and publication bookkeeping is forward mode's, so signaling, reconnects and slot reuse
work the same. Two things differ from handing `relay.subscribe(track)` straight to the sender:

- aiortc's sender ends for good at the first MediaStreamError (`RTCRtpSender._run_rtp`), and a
  relay subscription raises one whenever its source ends. A down slot must outlive its source
  (a publisher reloading, a slot reused for the next arrival), so the sender's track is the
  slot's RelayDownTrack, and the relay subscription behind it changes.
- aiortc's relay queues without bound. Here a subscriber whose encoder cannot keep up loses the
  oldest decoded frames (counted in `frames_dropped`) instead of falling further behind.

Keyframes need no help: each subscriber has its own encoder, which starts with a keyframe and
answers that subscriber's PLI/FIR itself (aiortc's default `_send_keyframe`), and the receiver
asks the publisher for one when its own decoding needs it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc.contrib.media import MediaRelay
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from av.frame import Frame

from media.counters import MediaCounters
from media.firstframe import FirstFrame
from media.keyframes import KeyframeRequests
from media.reassembly import JITTER_BUFFER_ATTR, VIDEO_CAPACITY
from media.tasks import OwnedTasks

#: Decoded frames a publication holds while nobody reads it (before its first subscriber).
SOURCE_QUEUE_FRAMES = {"video": 2, "audio": 10}
#: Decoded frames a subscriber's encoder may fall behind before the oldest are dropped.
DOWN_QUEUE_FRAMES = {"video": 3, "audio": 10}

FrameSink = Callable[[Frame], None]


class RelayUpTrack:
    """A publisher's incoming track in relay mode: decoded frames from the receiver's track.

    Same surface as `media.uptrack.UpTrack` where the room and the quality meter use it
    (`frames`, `on_first_frame`, sinks)."""

    def __init__(
        self,
        kind: str,
        receiver: RTCRtpReceiver,
        media_ssrc: Callable[[], int | None],
        tasks: OwnedTasks,
        counters: MediaCounters,
    ) -> None:
        self.kind = kind
        self.track = receiver.track
        self._receiver = receiver
        self._keyframes = KeyframeRequests(receiver, media_ssrc, tasks, counters)
        self._counters = counters
        self._sinks: list[FrameSink] = []
        self._first_frame = FirstFrame()
        self.frames = 0
        # Drained whether or not anyone subscribes: the receiver's track queue is unbounded,
        # so an unread publisher would pile up decoded pictures.
        self._drain = tasks.spawn(self._run())

    def add_sink(self, sink: FrameSink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def on_first_frame(self, callback: Callable[[], None]) -> None:
        self._first_frame.on(callback)

    def resume(self) -> None:
        """The publisher sends this track again (a screen shared again on its m-line): its
        packets from before the pause may never complete a frame (those it sent while the
        receiver was already disabled are lost), and aiortc's buffer would hold everything
        behind that gap until 512 more packets came. So the buffer starts afresh, and the
        decoder, which now lacks the pictures the next ones refer to, gets a keyframe."""
        if self.kind != "video" or self.frames == 0:
            return
        setattr(
            self._receiver, JITTER_BUFFER_ATTR, JitterBuffer(capacity=VIDEO_CAPACITY, is_video=True)
        )
        self._keyframes.request()

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, Frame):
                continue  # a receiver yields decoded frames only
            self.frames += 1
            self._counters.frames_received += 1
            self._first_frame.arrived()
            for sink in list(self._sinks):
                sink(frame)

    def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()


class RelaySourceTrack(MediaStreamTrack):
    """A publication's decoded picture or sound: what its MediaRelay reads.

    It never ends while the publication lives, whoever publishes into it. Timestamps are put on
    one clock shared by every publication (this process's monotonic clock, anchored at each
    source's first frame), so a subscriber's encoder sees them move forward when the publisher
    reconnects or its slot is given to someone else. They are set here, once per frame, before
    the frame is shared: the subscribers' encoders read it from executor threads."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._queue: deque[Frame] = deque()
        self._capacity = SOURCE_QUEUE_FRAMES[kind]
        self._ready = asyncio.Event()
        self._offset: int | None = None

    def source_changed(self) -> None:
        self._offset = None

    def push(self, frame: Frame) -> None:
        if self.readyState != "live" or frame.pts is None or frame.time_base is None:
            return
        if self._offset is None:
            self._offset = round(time.monotonic() / frame.time_base) - frame.pts
        frame.pts += self._offset
        if len(self._queue) >= self._capacity:
            self._queue.popleft()  # nobody reads yet: no subscriber has started
        self._queue.append(frame)
        self._ready.set()

    async def recv(self) -> Frame:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class RelayPublication:
    """One participant's audio or video in relay mode; outlives the publisher's reconnects.

    Same surface as `media.publication.Publication` where the room uses it."""

    def __init__(self, participant: str, kind: str, slot: str | None = None) -> None:
        self.participant = participant
        self.kind = kind
        #: Its key in the room: "audio", "video", "screen" or "camera2" (media.sources).
        self.slot = slot or kind
        self.source: RelayUpTrack | None = None
        self.subscribers: set[RelayDownTrack] = set()
        self.track = RelaySourceTrack(kind)
        self.relay = MediaRelay()

    def set_source(self, source: RelayUpTrack | None) -> None:
        if self.source is source:
            return
        if self.source is not None:
            self.source.remove_sink(self.track.push)
        self.source = source
        self.track.source_changed()
        if source is not None:
            source.add_sink(self.track.push)
            source.resume()

    def subscribe(self) -> MediaStreamTrack:
        """A new consumer of this publication's decoded frames."""
        return self.relay.subscribe(self.track)

    def request_keyframe(self) -> None:
        """Nothing to ask the publisher for: every subscriber's encoder makes its own."""

    def close(self) -> None:
        self.set_source(None)
        for down in list(self.subscribers):
            down.detach()
        self.track.stop()


class RelayDownTrack(MediaStreamTrack):
    """A down slot's track in relay mode: decoded frames the sender encodes for one subscriber.

    Same surface as `media.downtrack.DownTrack` where the room and the peer use it."""

    def __init__(
        self,
        kind: str,
        counters: MediaCounters,
        tasks: OwnedTasks,
        on_first_frame: Callable[[RelayDownTrack], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._counters = counters
        self._tasks = tasks
        self._on_first_frame = on_first_frame
        self._publication: RelayPublication | None = None
        self._subscription: MediaStreamTrack | None = None
        self._pump: asyncio.Task[Any] | None = None
        self._queue: deque[Frame] = deque()
        self._capacity = DOWN_QUEUE_FRAMES[kind]
        self._ready = asyncio.Event()
        self.frames_sent = 0

    @property
    def publication(self) -> RelayPublication | None:
        return self._publication

    def attach(self, publication: RelayPublication) -> None:
        self.detach()
        if self.readyState != "live":
            return
        self._publication = publication
        publication.subscribers.add(self)
        self._subscription = publication.subscribe()
        self._pump = self._tasks.spawn(self._run(self._subscription))

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        if self._subscription is not None:
            self._subscription.stop()
            self._subscription = None
        if self._publication is not None:
            self._publication.subscribers.discard(self)
            self._publication = None
        self._queue.clear()

    async def _run(self, subscription: MediaStreamTrack) -> None:
        """Move frames from the relay subscription to this track, dropping the oldest when the
        sender's encoder falls behind."""
        while True:
            try:
                frame = await subscription.recv()
            except MediaStreamError:
                return  # the publication closed; detach() follows
            if not isinstance(frame, Frame):
                continue
            if len(self._queue) >= self._capacity:
                self._queue.popleft()
                self._counters.frames_dropped += 1
            self._queue.append(frame)
            self._ready.set()

    async def recv(self) -> Frame:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        self.frames_sent += 1
        self._counters.frames_forwarded += 1
        if self.frames_sent == 1 and self._on_first_frame is not None:
            self._on_first_frame(self)
        return frame

    def stop(self) -> None:
        self.detach()
        super().stop()
        self._ready.set()
