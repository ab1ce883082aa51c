"""Pre-encoded loops for light bots, and counting encoded frames without decoding them."""

from __future__ import annotations

import fractions
import time
from collections.abc import AsyncIterator
from typing import Any

import aiortc.rtcrtpreceiver
import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder

from media.client import ClientPeer, RemoteStats
from media.config import MediaConfig
from media.encoded import (
    VIDEO_GOP,
    EncodedAudioLoop,
    EncodedMedia,
    EncodedVideoLoop,
    vp8_keyframe_size,
)
from media.frames import is_vp8_keyframe, vp8_keyframe_start
from media.room import SfuRoom
from media.sfu import Sfu
from media.stamp import STAMP_BYTES, read_stamp, stamp
from tests.test_media_room import Recorder

LOOPBACK = ("127.0.0.1",)


@pytest.fixture(scope="module")
def media() -> EncodedMedia:
    return EncodedMedia.build(320, 240)


def test_the_video_loop_starts_with_a_keyframe_and_repeats_one_every_gop(
    media: EncodedMedia,
) -> None:
    loop = media.video
    assert len(loop.packets) == 60
    keyframes = [i for i, data in enumerate(loop.packets) if is_vp8_keyframe(data)]
    assert keyframes == [0, VIDEO_GOP] == [i for i, k in enumerate(loop.keyframes) if k]
    assert vp8_keyframe_size(loop.packets[0]) == (320, 240)
    assert vp8_keyframe_size(loop.packets[1]) is None
    assert len(media.audio.packets) == 50


async def _pts_and_rate(track: EncodedVideoLoop | EncodedAudioLoop, count: int) -> list[int]:
    started = time.monotonic()
    pts: list[int] = []
    for _ in range(count):
        packet = await track.recv()
        assert packet.pts is not None
        pts.append(packet.pts)
    elapsed = time.monotonic() - started
    step = pts[1] - pts[0]
    clock = 90_000 if track.kind == "video" else 48_000
    # Paced at the real rate: the last packet is due (count - 1) steps after the first.
    assert elapsed >= (count - 1) * step / clock - 0.005
    return pts


async def test_video_packets_come_at_30_fps_with_increasing_pts(media: EncodedMedia) -> None:
    track = EncodedVideoLoop(media.video)
    pts = await _pts_and_rate(track, 65)  # past the loop's end: pts keep increasing
    assert pts == [3000 * k for k in range(65)]
    packet = await track.recv()
    assert packet.time_base == fractions.Fraction(1, 90_000)
    # Frame 65 replays loop frame 5; frame 60 was the loop's keyframe again.
    assert bytes(packet) == media.video.packets[5]


async def test_audio_packets_come_every_20_ms_with_increasing_pts(media: EncodedMedia) -> None:
    track = EncodedAudioLoop(media.audio)
    pts = await _pts_and_rate(track, 55)
    assert pts == [960 * k for k in range(55)]
    assert (await track.recv()).time_base == fractions.Fraction(1, 48_000)


def test_a_stamped_frame_carries_its_sending_time_and_still_decodes(media: EncodedMedia) -> None:
    keyframe = media.video.packets[0]
    stamped = stamp(keyframe, now_ns=1_234_567_890_123)
    assert read_stamp(stamped) == 1_234_567_890_123
    assert read_stamp(keyframe) is None and read_stamp(b"") is None
    assert vp8_keyframe_size(stamped) == (320, 240)
    # A VP8 decoder reads no further than its partitions: the trailer changes nothing it sees.
    decoder = av.CodecContext.create("vp8", "r")
    (plain,) = decoder.decode(av.Packet(keyframe))
    decoder = av.CodecContext.create("vp8", "r")
    (with_stamp,) = decoder.decode(av.Packet(stamped))
    assert (with_stamp.width, with_stamp.height) == (320, 240)
    assert bytes(with_stamp.planes[0]) == bytes(plain.planes[0])


async def test_a_stamped_loop_stamps_video_with_the_time_it_is_sent(media: EncodedMedia) -> None:
    track = EncodedVideoLoop(media.video, stamped=True)
    before = time.time_ns()
    packet = bytes(await track.recv())
    after = time.time_ns()
    sent = read_stamp(packet)
    assert sent is not None and before <= sent <= after
    assert packet[:-STAMP_BYTES] == media.video.packets[0]


def test_a_loop_of_the_wrong_kind_is_refused(media: EncodedMedia) -> None:
    with pytest.raises(ValueError):
        EncodedVideoLoop(media.audio)


@pytest.fixture
async def room() -> AsyncIterator[SfuRoom]:
    sfu = Sfu(MediaConfig(ice_hosts=LOOPBACK))
    yield sfu.room("visit", Recorder())
    await sfu.close()


async def test_light_peers_count_encoded_frames_and_read_the_keyframe_size(
    room: SfuRoom, media: EncodedMedia, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders: list[object] = []
    original = aiortc.rtcrtpreceiver.get_decoder

    def counting_get_decoder(codec: Any) -> Any:
        decoders.append(codec)
        return original(codec)

    # In this process the SFU never decodes either, so any decoder would be a light peer's.
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", counting_get_decoder)
    peers = {
        name: ClientPeer(
            ice_hosts=LOOPBACK, decode=False, send_encoded=True, encoded=media, stamped=True
        )
        for name in ("nurse", "gp")
    }
    try:
        for name in peers:
            await room.connect(name)
        # Both are in the room: each now needs one receive slot per kind for the other.
        for name, peer in peers.items():
            peer.ensure_recv_slots(room.recv_slots_for(name))
            answer = await room.handle_offer(name, await peer.create_offer())
            await peer.apply_answer(answer)
        for name, peer in peers.items():
            peer.track_map = room.peers[name].track_map()

        def sees_other(remotes: dict[str, RemoteStats]) -> bool:
            return any(
                s.video_frames >= 40 and s.audio_frames >= 40 and s.width for s in remotes.values()
            )

        for name, peer in peers.items():
            await peer.wait_until(sees_other, timeout=20)
            (other,) = set(peers) - {name}
            stats = peer.remotes[other]
            assert (stats.width, stats.height) == (320, 240)
            assert stats.first_frame_seconds is not None
            # Each frame came stamped through the SFU: its latency was timed, and is sane.
            assert len(stats.latencies_ms) >= 40
            assert all(0 <= ms < 2000 for ms in stats.latencies_ms), list(stats.latencies_ms)
        assert decoders == []  # counted, never decoded
    finally:
        for peer in peers.values():
            await peer.close()


def test_the_server_tells_a_keyframe_start_from_the_rtp_payload(media: EncodedMedia) -> None:
    """As aiortc and Chromium packetise VP8 (RFC 7741 descriptors with 7- and 15-bit picture
    ids): only the first packet of a keyframe starts one."""
    keyframe, delta = media.video.packets[0], media.video.packets[1]
    for picture_id in (5, 300):
        key_packets = Vp8Encoder._packetize(keyframe, picture_id)
        assert len(key_packets) > 1
        assert vp8_keyframe_start(key_packets[0])
        assert not any(vp8_keyframe_start(p) for p in key_packets[1:])
        assert not vp8_keyframe_start(Vp8Encoder._packetize(delta, picture_id)[0])
    # No extension: S bit, partition 0, then the frame tag.
    assert vp8_keyframe_start(b"\x10" + keyframe[:20])
    assert not vp8_keyframe_start(b"\x11" + keyframe[:20])  # a later partition
    assert not vp8_keyframe_start(b"\x90")  # truncated
