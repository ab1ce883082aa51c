"""Pre-encoded media for light headless participants (load tests, probes).

A loop of VP8 video and Opus audio is encoded ONCE with PyAV and then replayed forever at the
real rate as `av.Packet`s, so aiortc's RTCRtpSender only packetises it, and a process can run
many participants without encoding a frame per participant. Build an `EncodedMedia` once per
size and pass it to every participant that should share it.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass

import av
import numpy
from aiortc.mediastreams import MediaStreamTrack

from media.frames import CLOCK_RATE, is_vp8_keyframe
from media.stamp import stamp
from media.synthetic import AUDIO_RATE, AUDIO_SAMPLES, SyntheticAudioTrack, _bars_frame

#: Frames in the video loop and the distance between its keyframes.
VIDEO_LOOP_FRAMES = 60
#: Target video bitrate per pixel: 1.2 Mbps at 640x480, a webcam's rate in a browser call.
BITS_PER_PIXEL = 4
#: Grain (luma, +-) over the moving bars, as a camera sensor has: without it libvpx needs only
#: about 80 kbps for the bars at 640x480, far below what a real camera makes a server carry.
GRAIN = 4
VIDEO_GOP = 30
#: 20 ms Opus frames in the audio loop (one second of the 440 Hz tone, which repeats exactly).
AUDIO_LOOP_FRAMES = 50

#: RFC 6386 section 9.1: the start code that follows a key frame's 3-byte frame tag.
VP8_START_CODE = b"\x9d\x01\x2a"


@dataclass(frozen=True, slots=True)
class EncodedLoop:
    """Encoded frames to replay in order, `step` clock ticks apart."""

    kind: str
    packets: tuple[bytes, ...]
    keyframes: tuple[bool, ...]
    step: int

    @property
    def clock_rate(self) -> int:
        return CLOCK_RATE[self.kind]


@dataclass(frozen=True, slots=True)
class EncodedMedia:
    """One participant's camera and microphone, encoded once; share it between participants."""

    video: EncodedLoop
    audio: EncodedLoop
    width: int
    height: int

    @classmethod
    def build(
        cls, width: int = 640, height: int = 480, fps: int = 30, hue: int = 0
    ) -> EncodedMedia:
        """Encode the loops (CPU-bound: call it in a thread from a running event loop)."""
        return cls(encode_video_loop(width, height, fps, hue), encode_audio_loop(), width, height)


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 key frame (RFC 6386 section 9.1), None for anything else."""
    if len(data) < 10 or not is_vp8_keyframe(data) or data[3:6] != VP8_START_CODE:
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def _grainy(frame: av.VideoFrame, grain: numpy.random.Generator) -> av.VideoFrame:
    planes = frame.to_ndarray()  # yuv420p: the luma rows, then the chroma rows
    luma = planes[: frame.height]
    noise = grain.integers(-GRAIN, GRAIN + 1, size=luma.shape, dtype=numpy.int16)
    planes[: frame.height] = numpy.clip(luma.astype(numpy.int16) + noise, 0, 255)
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def encode_video_loop(
    width: int, height: int, fps: int = 30, hue: int = 0, frames: int = VIDEO_LOOP_FRAMES
) -> EncodedLoop:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(fps, 1)
    codec.time_base = fractions.Fraction(1, fps)
    codec.gop_size = VIDEO_GOP
    codec.bit_rate = max(150_000, width * height * BITS_PER_PIXEL)
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "keyint_min": str(VIDEO_GOP),
    }
    packets: list[bytes] = []
    grain = numpy.random.default_rng(hue)
    for k in range(frames):
        frame = _grainy(_bars_frame(width, height, (k * width) // frames, hue), grain)
        frame.pts = k
        frame.time_base = codec.time_base
        # Keyframes exactly every VIDEO_GOP frames, the loop's seam included.
        frame.pict_type = (
            av.video.frame.PictureType.I if k % VIDEO_GOP == 0 else av.video.frame.PictureType.NONE
        )
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    if len(packets) != frames:
        raise RuntimeError(f"libvpx gave {len(packets)} packets for {frames} frames")
    keyframes = tuple(is_vp8_keyframe(p) for p in packets)
    return EncodedLoop("video", tuple(packets), keyframes, CLOCK_RATE["video"] // fps)


def encode_audio_loop(frames: int = AUDIO_LOOP_FRAMES) -> EncodedLoop:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32_000
    tone = SyntheticAudioTrack()._chunks
    packets: list[bytes] = []
    # The encoder looks ahead; feed a second lap so that `frames` full packets come out.
    for k in range(2 * frames):
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(tone[k % len(tone)])
        frame.sample_rate = AUDIO_RATE
        frame.pts = k * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        packets += [bytes(p) for p in codec.encode(frame)]
    # The last `frames` packets are one period of the tone, clear of the encoder's start-up.
    chosen = tuple(packets[-frames:])
    return EncodedLoop("audio", chosen, (True,) * len(chosen), AUDIO_SAMPLES)


class EncodedLoopTrack(MediaStreamTrack):
    """Replays an `EncodedLoop` forever at its real rate with increasing pts."""

    def __init__(self, loop: EncodedLoop, stamped: bool = False) -> None:
        """`stamped`: append the sending time to each frame (`media.stamp`; video only)."""
        super().__init__()
        self.kind = loop.kind
        self._encoded = loop
        self._stamped = stamped
        self._time_base = fractions.Fraction(1, loop.clock_rate)
        self._interval = loop.step / loop.clock_rate
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._count * self._interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packets = self._encoded.packets
        data = packets[self._count % len(packets)]
        packet = av.Packet(stamp(data) if self._stamped else data)
        packet.pts = self._count * self._encoded.step
        packet.time_base = self._time_base
        self._count += 1
        return packet


class EncodedVideoLoop(EncodedLoopTrack):
    kind = "video"

    def __init__(self, loop: EncodedLoop, stamped: bool = False) -> None:
        if loop.kind != "video":
            raise ValueError("EncodedVideoLoop needs a video loop")
        super().__init__(loop, stamped)


class EncodedAudioLoop(EncodedLoopTrack):
    kind = "audio"

    def __init__(self, loop: EncodedLoop) -> None:
        if loop.kind != "audio":
            raise ValueError("EncodedAudioLoop needs an audio loop")
        super().__init__(loop)
