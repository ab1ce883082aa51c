"""Three headless participants join one visit through the real server, as separate processes."""

from __future__ import annotations

import asyncio
import json

import psutil

from tests.support.servers import RunningServer, run_bot

ROLES = ("citizen", "nurse", "gp")


async def test_each_bot_decodes_the_other_two_and_the_server_decodes_nothing(
    server: RunningServer,
) -> None:
    visit = await server.create_visit()
    assert set(visit["links"]) == set(ROLES)
    process = psutil.Process(server.process.pid)
    cpu_before = process.cpu_times()
    # The citizen and the nurse wait in the waiting room; the GP lets them in.
    extra = {"citizen": (), "nurse": (), "gp": ("--admit-all",)}
    reports = await asyncio.gather(
        *(run_bot(visit["links"][role], 8, *extra[role]) for role in ROLES)
    )
    cpu_after = process.cpu_times()

    for role, report in zip(ROLES, reports, strict=True):
        assert report["exit_code"] == 0, report
        assert report["role"] == role and report["visit"] == visit["visit"]
        assert report["waited_seconds"] is not None, report  # everyone got in
        remotes = {r["role"]: r for r in report["remotes"]}
        assert set(remotes) == set(ROLES) - {role}, report
        for remote in remotes.values():
            assert remote["video_frames"] > 30, report
            assert remote["audio_frames"] > 50, report
            assert remote["resolution"] == [320, 240]
            assert remote["first_frame_seconds"] is not None
        # The server's own statistics put a quality level on every remote tile (loopback: good).
        assert {r["participant"] for r in report["remotes"]} <= set(report["quality"]), report
        assert set(report["quality"].values()) == {"good"}, report

    health = await server.health()
    assert health["media"]["frames_forwarded"] > 0
    # The bots' packets were taken in the socket callback, and none was refused.
    assert health["media"]["packets_received_direct"] > 0
    assert health["media"]["packets_refused"] == 0
    assert await server.stop() == 0
    decoded = json.loads(server.decode_report.read_text())
    # Forwarding means the server never builds a decoder, let alone decodes a frame.
    assert decoded == {"decoders": 0, "frames": 0}
    busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    print(f"server CPU for one three-way room (bots 320x240): {busy:.2f} s over ~8 s")


async def test_a_link_for_one_visit_cannot_join_another(server: RunningServer) -> None:
    first = await server.create_visit()
    second = await server.create_visit()
    foreign = first["links"]["citizen"].replace(first["visit"], second["visit"], 1)
    report = await run_bot(foreign, 2)
    assert report["exit_code"] == 2
    assert report["error"]["code"] == "token-visit-mismatch"
    tampered = first["links"]["nurse"][:-6] + "AAAAAA"
    report = await run_bot(tampered, 2)
    assert report["error"]["code"] == "token-bad-signature"


async def test_visit_create_options_pick_the_seats(server: RunningServer) -> None:
    visit = await server.create_visit("--specialist", "--relative", "--interpreter")
    assert set(visit["links"]) == {"citizen", "nurse", "specialist", "relative", "interpreter"}
    for url in visit["links"].values():
        assert url.startswith(f"{server.base_url}/v/{visit['visit']}#")
