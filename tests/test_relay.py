"""The MediaRelay baseline (`--media-mode relay`): same bookkeeping, but the server transcodes.

Real aiortc peers against the SFU room, and a real server process with three bot processes. The
decode guard must count decoders here, where forwarding (tests/e2e/test_three_way_bots.py) must
count none: that is what makes the guard's zero mean something.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media.config import MediaConfig
from media.relay import RelayDownTrack, RelayPublication
from media.sfu import Sfu
from server.config import Settings, SettingsError
from tests.support.servers import RunningServer, run_bot, start_server
from tests.test_media_room import LOOPBACK, Harness, Recorder, sees

ROLES = ("citizen", "nurse", "gp")


def test_the_media_mode_is_a_setting_forward_by_default() -> None:
    assert Settings.load(env={}).media_mode == "forward"
    assert Settings.load(env={"SCREENVISIT_MEDIA_MODE": "relay"}).media_mode == "relay"
    assert Settings.load(env={}, overrides={"media_mode": "relay"}).media_mode == "relay"
    with pytest.raises(SettingsError):
        Settings.load(env={"SCREENVISIT_MEDIA_MODE": "transcode"})
    with pytest.raises(ValueError):
        MediaConfig(media_mode="transcode")  # type: ignore[arg-type]


@pytest.fixture
async def relay_harness() -> AsyncIterator[Harness]:
    sfu = Sfu(MediaConfig(ice_hosts=LOOPBACK, media_mode="relay"))
    recorder = Recorder()
    h = Harness(sfu.room("visit", recorder), recorder)
    yield h
    for client in h.clients.values():
        await client.close()
    await sfu.close()


async def test_relay_three_participants_each_receive_the_other_two(
    relay_harness: Harness,
) -> None:
    harness = relay_harness
    for i, name in enumerate(("citizen", "nurse", "gp")):
        await harness.join(name, hue=60 * i)
    for name, client in harness.clients.items():
        others = [n for n in harness.clients if n != name]
        await client.wait_until(sees(*others), timeout=20)
        assert all(client.remotes[o].width == 320 for o in others)
    room = harness.room
    assert all(isinstance(p, RelayPublication) for p in room.publications.values())
    for peer in room.peers.values():
        assert all(isinstance(slot.track, RelayDownTrack) for slot in peer.slots)
        assert all(slot.track.frames_sent > 0 for slot in peer.slots)
    assert {(n, k) for n in harness.clients for k in ("audio", "video")} <= (
        harness.recorder.first_frames
    )


async def test_relay_a_reconnecting_publisher_comes_back_in_the_same_slot(
    relay_harness: Harness,
) -> None:
    harness = relay_harness
    await harness.join("gp")
    nurse = await harness.join("nurse")
    await nurse.wait_until(sees("gp"), timeout=20)
    slots_before = nurse.track_map.copy()
    renegotiations_before = harness.recorder.renegotiate.qsize()

    await harness.join("gp", hue=120)  # a page reload: new peer connection, same seat
    frames = nurse.remotes["gp"].video_frames
    await nurse.wait_until(sees("gp", video=frames + 15), timeout=20)
    assert nurse.track_map == slots_before
    assert harness.recorder.renegotiate.qsize() == renegotiations_before


async def test_relay_a_leaver_frees_slots_that_the_next_participant_reuses(
    relay_harness: Harness,
) -> None:
    harness = relay_harness
    await harness.join("gp")
    nurse = await harness.join("nurse")
    await harness.join("citizen")
    await nurse.wait_until(sees("gp", "citizen"), timeout=20)
    mids = set(nurse.track_map)

    await harness.room.leave("citizen")
    await harness.clients.pop("citizen").close()
    await harness.settle()
    assert [entry for entry in nurse.track_map.values() if entry is None] != []

    relative = await harness.join("relative")
    assert harness.recorder.renegotiate.empty()
    # The slot the citizen's media ended in carries the relative's now: its sender lives on.
    await nurse.wait_until(sees("relative"), timeout=20)
    assert set(nurse.track_map) == mids
    await relative.wait_until(sees("gp", "nurse"), timeout=20)


@pytest.fixture
async def relay_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path, "--media-mode", "relay", "--quality-interval", "1")
    yield running
    await running.stop()


async def test_relay_mode_server_transcodes_and_the_decode_guard_sees_it(
    relay_server: RunningServer,
) -> None:
    server = relay_server
    visit = await server.create_visit("--no-waiting-room")
    reports = await asyncio.gather(*(run_bot(visit["links"][role], 8) for role in ROLES))

    for role, report in zip(ROLES, reports, strict=True):
        assert report["exit_code"] == 0, report
        assert report["role"] == role and report["visit"] == visit["visit"]
        remotes = {r["role"]: r for r in report["remotes"]}
        assert set(remotes) == set(ROLES) - {role}, report
        for remote in remotes.values():
            assert remote["video_frames"] > 30, report
            assert remote["audio_frames"] > 50, report
            assert remote["resolution"] == [320, 240]
            assert remote["first_frame_seconds"] is not None

    health = await server.health()
    assert health["media"]["frames_forwarded"] > 0
    assert health["media"]["keyframe_requests_sent"] == 0  # each subscriber has its own encoder
    assert await server.stop() == 0
    decoded = json.loads(server.decode_report.read_text())
    # One decoder per published track at least (three video, three audio), all of them busy.
    assert decoded["decoders"] >= 6, decoded
    assert decoded["frames"] > 3 * (30 + 50), decoded
