"""Synthetic camera and microphone for headless participants (bots, probes, benchmarks)."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import time

import av
from aiortc.mediastreams import MediaStreamTrack

AUDIO_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms
#: Distinct pictures in the video loop; each differs from the last, so the encoder does real work.
VIDEO_LOOP = 30


def _bars_frame(width: int, height: int, shift: int, hue: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    bar = max(width // 8, 1)
    row = bytes(((((x + shift) // bar) * 29 + hue) % 220 + 16) for x in range(width))
    frame.planes[0].update(row * height)
    chroma = bytes([(hue * 3) % 256]) * ((width // 2) * (height // 2))
    frame.planes[1].update(chroma)
    frame.planes[2].update(bytes(255 - b for b in chroma[:1]) * len(chroma))
    return frame


class SyntheticVideoTrack(MediaStreamTrack):
    """Moving grey-level bars at a fixed size and rate."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30, hue: int = 0) -> None:
        super().__init__()
        self._fps = fps
        self._time_base = fractions.Fraction(1, 90_000)
        self._start: float | None = None
        self._count = 0
        self._frames = [
            _bars_frame(width, height, (k * width) // VIDEO_LOOP, hue) for k in range(VIDEO_LOOP)
        ]

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._count / self._fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = self._frames[self._count % VIDEO_LOOP]
        # The encoder marks a frame it must make a keyframe; the picture is reused, so clear it.
        frame.pict_type = av.video.frame.PictureType.NONE
        frame.pts = int(self._count * 90_000 / self._fps)
        frame.time_base = self._time_base
        self._count += 1
        return frame


class SyntheticAudioTrack(MediaStreamTrack):
    """A quiet 440 Hz tone in 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._time_base = fractions.Fraction(1, AUDIO_RATE)
        self._start: float | None = None
        self._count = 0
        # 440 Hz repeats exactly every 50 frames of 20 ms (one second).
        self._chunks = []
        for k in range(50):
            samples = array.array(
                "h",
                (
                    int(1600 * math.sin(2 * math.pi * 440 * (k * AUDIO_SAMPLES + i) / AUDIO_RATE))
                    for i in range(AUDIO_SAMPLES)
                ),
            )
            self._chunks.append(samples.tobytes())

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._count * AUDIO_SAMPLES / AUDIO_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._chunks[self._count % len(self._chunks)])
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._count * AUDIO_SAMPLES
        frame.time_base = self._time_base
        self._count += 1
        return frame
