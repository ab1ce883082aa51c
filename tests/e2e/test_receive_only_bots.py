"""Participants who send nothing, or only H264 video, through the real server, as separate bot
processes (`screenvisit bot --receive-only`, `--video-codec H264`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.servers import RunningServer, run_bot, start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    """One server for the module's tests, each on a visit of its own (a start takes seconds)."""
    running = await start_server(tmp_path_factory.mktemp("receive-only"), "--quality-interval", "1")
    yield running
    await running.stop()


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


async def test_an_h264_only_participant_never_sees_a_silent_blank_tile(
    server: RunningServer,
) -> None:
    # The GP (host, in first) sends VP8 before the H264-only citizen is let in. The GP is asked
    # to switch to H264; a bot's encoder cannot switch mid-call (a browser's can, see
    # tests/e2e/test_join_page.py), so either the citizen gets the GP's video, or it is told
    # whose video it cannot decode and why. Sound comes through either way.
    visit = await server.create_visit()
    gp, citizen = await asyncio.gather(
        run_bot(visit["links"]["gp"], 12, "--admit-all"),
        run_bot(visit["links"]["citizen"], 9, "--video-codec", "H264"),
    )
    for report in (gp, citizen):
        assert report["exit_code"] == 0 and report["errors"] == [], report
    (from_gp,) = citizen["remotes"]
    assert from_gp["audio_frames"] > 50, citizen
    told = [{"participant": gp["participant"], "codec": "VP8"}]
    print(
        "H264-only citizen: GP video frames",
        from_gp["video_frames"],
        "told",
        citizen["unsupported"],
    )
    assert from_gp["video_frames"] > 30 or citizen["unsupported"] == told, citizen
    (from_citizen,) = gp["remotes"]
    assert from_citizen["video_frames"] > 30 and from_citizen["audio_frames"] > 50, gp
