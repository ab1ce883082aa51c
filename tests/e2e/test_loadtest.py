"""`screenvisit loadtest` against a real server process: light bots, all in one process."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.support.servers import RunningServer, run_bot, start_server


async def test_loadtest_joins_every_bot_and_every_stream_delivers_video(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "loadtest",
            "--url",
            server.base_url,
            "--rooms",
            "2",
            "--seconds",
            "6",
            "--width",
            "320",
            "--height",
            "240",
            "--json",
            env=server.env(),  # finds the server's signing key, as `visit create` does
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    finally:
        assert await server.stop() == 0
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out)
    assert summary["visits_created"] == 2
    assert summary["bots_attempted"] == summary["bots_joined"] == 6
    assert summary["join_success_rate"] == 1.0
    assert summary["errors"] == []
    # Each bot receives the other two in its visit; every one of those streams delivered video.
    assert summary["streams"] == summary["streams_with_video"] == 12
    assert summary["video_fps"]["min"] > 0
    assert summary["audio_fps_median"] > 0
    assert summary["join_seconds"]["p95"] is not None
    assert summary["first_frame_seconds"]["p95"] is not None
    # The bots stamp their frames, so each stream's end-to-end latency was measured.
    assert summary["frame_latency_ms"]["p50"] is not None
    assert 0 <= summary["frame_latency_ms"]["p50"] <= summary["frame_latency_ms"]["p95"]
    # The server forwarded all of it without building a single decoder.
    decoded = json.loads(server.decode_report.read_text())
    assert decoded == {"decoders": 0, "frames": 0}


async def test_a_light_bot_reports_encoded_frames_and_resolution(server: RunningServer) -> None:
    visit = await server.create_visit("--no-waiting-room")
    reports = await asyncio.gather(
        run_bot(visit["links"]["gp"], 5, "--no-decode"),
        run_bot(visit["links"]["nurse"], 5, "--no-decode"),
    )
    for report in reports:
        assert report["exit_code"] == 0, report
        assert report["decoded"] is False
        (remote,) = report["remotes"]
        assert remote["video_frames"] > 30 and remote["audio_frames"] > 50, report
        assert remote["resolution"] == [320, 240]
        assert remote["video_fps"] > 0 and remote["first_frame_seconds"] is not None
