"""Participants who send nothing, or only H264 video, through the real server, as separate bot
processes (`screenvisit bot --receive-only`, `--video-codec H264`)."""

from __future__ import annotations

import asyncio

from tests.support.servers import RunningServer, run_bot


async def test_a_host_who_sends_nothing_and_joins_first_sees_and_hears_everyone(
    server: RunningServer,
) -> None:
    # The GP is the host: in the call first, while the others wait until the GP lets them in.
    # The GP's first offer is made alone, with nothing to send and nobody to receive.
    visit = await server.create_visit()
    gp = asyncio.create_task(run_bot(visit["links"]["gp"], 12, "--receive-only", "--admit-all"))
    others = await asyncio.gather(
        run_bot(visit["links"]["citizen"], 8), run_bot(visit["links"]["nurse"], 8)
    )
    report = await gp
    assert report["exit_code"] == 0, report
    assert report["errors"] == [], report
    remotes = {r["role"]: r for r in report["remotes"]}
    assert set(remotes) == {"citizen", "nurse"}, report
    for remote in remotes.values():
        assert remote["video_frames"] > 30, report
        assert remote["audio_frames"] > 50, report
        assert remote["resolution"] == [320, 240], report
    for other in others:
        assert other["exit_code"] == 0 and other["errors"] == [], other
        seen = {r["role"]: r for r in other["remotes"]}
        peer = ({"citizen", "nurse"} - {other["role"]}).pop()
        assert seen[peer]["video_frames"] > 30, other
        assert seen.get("gp", {"video_frames": 0, "audio_frames": 0})["video_frames"] == 0


async def test_an_h264_only_participant_and_a_vp8_one_see_and_hear_each_other(
    server: RunningServer,
) -> None:
    # The GP (host, in first) offers H264 only; the citizen, let in after, offers VP8 first and
    # is answered with H264, the codec both can decode.
    visit = await server.create_visit()
    reports = await asyncio.gather(
        run_bot(visit["links"]["gp"], 10, "--video-codec", "H264", "--admit-all"),
        run_bot(visit["links"]["citizen"], 8),
    )
    for report in reports:
        assert report["exit_code"] == 0 and report["errors"] == [], report
        (remote,) = report["remotes"]
        assert remote["video_frames"] > 30, report
        assert remote["audio_frames"] > 50, report
        assert remote["resolution"] == [320, 240], report
