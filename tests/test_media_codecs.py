"""Participants who send nothing, and participants whose video is H264 only (iPhone Safari),
in an SFU room with real aiortc peers on loopback."""

from __future__ import annotations

from media.frames import h264_keyframe_start, vp8_keyframe_start
from media.peer import MediaPeer
from tests.test_media_room import Harness, harness, sees

__all__ = ["harness"]

H264_ONLY = ("video/H264",)


async def test_a_first_joiner_who_sends_nothing_sees_and_hears_those_who_come_after(
    harness: Harness,
) -> None:
    # Camera and microphone refused: no track to send, and nobody there yet.
    watcher = await harness.join("citizen", send=())
    await harness.join("nurse", hue=60)
    await harness.join("gp", hue=120)
    await watcher.wait_until(sees("nurse", "gp"), timeout=30)
    assert watcher.remotes["nurse"].width == 320
    # The others see each other; the watcher sends them nothing.
    await harness.clients["nurse"].wait_until(sees("gp"), timeout=30)
    assert "citizen" not in harness.clients["nurse"].remotes


async def test_a_participant_without_a_camera_is_heard_and_sees_the_others(
    harness: Harness,
) -> None:
    listener = await harness.join("citizen", send=("audio",))
    gp = await harness.join("gp", hue=60)
    await listener.wait_until(sees("gp"), timeout=30)
    await gp.wait_until(sees("citizen", video=0, audio=20), timeout=30)
    assert gp.remotes["citizen"].video_frames == 0


async def test_an_h264_only_participant_and_a_vp8_one_see_and_hear_each_other(
    harness: Harness,
) -> None:
    iphone = await harness.join("citizen", video_codecs=H264_ONLY)
    desktop = await harness.join("gp", hue=60)
    await iphone.wait_until(sees("gp"), timeout=30)
    await desktop.wait_until(sees("citizen"), timeout=30)
    assert iphone.remotes["gp"].width == 320 and desktop.remotes["citizen"].width == 320
    # The desktop offered VP8 first, and was answered with H264, which both decode.
    peers: dict[str, MediaPeer] = harness.room.peers
    assert peers["gp"].video_codec == "video/h264"
    assert peers["citizen"].video_codec == "video/h264"
    assert harness.recorder.unsupported == []


async def test_a_vp8_publisher_is_asked_to_switch_when_an_h264_only_participant_comes(
    harness: Harness,
) -> None:
    await harness.join("gp")
    assert harness.room.peers["gp"].video_codec == "video/vp8"  # alone: its first choice
    # Its encoder is running (frames reach the server) before the citizen comes.
    await harness.recorder.until(lambda: ("gp", "video") in harness.recorder.first_frames)
    await harness.join("citizen", video_codecs=H264_ONLY)
    # The GP was asked to offer again (Harness.settle answered), and was answered with H264:
    # a browser switches its encoder to it (aiortc as a client keeps its first encoder).
    assert harness.room.peers["gp"].video_sends[0] == "video/h264"
    answer = harness.clients["gp"].pc.remoteDescription.sdp
    video = answer[answer.index("m=video") :]
    first_payload_type = video.split("\r\n", 1)[0].split()[3]
    assert f"a=rtpmap:{first_payload_type} H264/90000" in video
    assert "VP8" not in video.split("m=", 2)[1]  # the GP's own video m-line
    # This GP (aiortc) cannot switch encoders mid-call: the citizen is told whose video it
    # cannot decode, and still hears the GP.
    citizen = harness.clients["citizen"]
    await citizen.wait_until(sees("gp", video=0, audio=100), timeout=30)
    await harness.recorder.until(lambda: bool(harness.recorder.unsupported))
    assert harness.recorder.unsupported == [("citizen", "gp", "VP8")]
    assert citizen.remotes["gp"].video_frames == 0


async def test_a_video_codec_the_server_does_not_forward_is_refused_by_name(
    harness: Harness,
) -> None:
    await harness.room.connect("citizen")
    offer = (await harness.join("gp")).pc.localDescription.sdp
    vp9_only = offer.replace("VP8/90000", "VP9/90000").replace("H264/90000", "AV1/90000")
    try:
        await harness.room.handle_offer("citizen", vp9_only)
    except Exception as exc:
        assert "offers none of the codecs the server forwards (VP8, H264" in str(exc)
        assert "VP9" in str(exc)
    else:
        raise AssertionError("an offer without VP8 or H264 video was accepted")
    # H264 in a profile aiortc does not take (High, as some Safaris also offer) is named too.
    high_only = offer.replace("VP8/90000", "VP9/90000").replace("42001f", "640c1f")
    high_only = high_only.replace("42e01f", "640c1f")
    try:
        await harness.room.handle_offer("citizen", high_only)
    except Exception as exc:
        assert "H264 (profile-level-id 640c1f, packetization-mode 1)" in str(exc)
    else:
        raise AssertionError("an offer with High-profile H264 only was accepted")


async def test_a_participant_who_sends_nothing_sees_those_already_there(
    harness: Harness,
) -> None:
    await harness.join("nurse", hue=60)
    await harness.join("gp", hue=120)
    watcher = await harness.join("citizen", send=())
    await watcher.wait_until(sees("nurse", "gp"), timeout=30)


def test_h264_keyframes_are_found_in_single_nal_stap_a_and_fu_a_payloads() -> None:
    sps, pps, idr, slice_ = b"\x67\x42", b"\x68\xce", b"\x65\x88\x84", b"\x41\x9a"
    assert h264_keyframe_start(sps) and h264_keyframe_start(idr)
    assert not h264_keyframe_start(pps) and not h264_keyframe_start(slice_)
    stap = bytes([0x78]) + b"".join(len(n).to_bytes(2, "big") + n for n in (sps, pps))
    assert h264_keyframe_start(stap)
    assert not h264_keyframe_start(bytes([0x78]) + (2).to_bytes(2, "big") + pps)
    fu_indicator = 0x60 | 28
    assert h264_keyframe_start(bytes([fu_indicator, 0x80 | 5]) + b"\x00" * 10)  # start of IDR
    assert not h264_keyframe_start(bytes([fu_indicator, 0x40 | 5]) + b"\x00" * 10)  # its end
    assert not h264_keyframe_start(bytes([fu_indicator, 0x80 | 1]) + b"\x00" * 10)  # a P slice
    assert not h264_keyframe_start(b"")
    # VP8's test reads an H264 IDR's NAL header as a VP8 descriptor: it must not be used.
    assert not vp8_keyframe_start(stap)
