"""A shared screen and a second camera through the SFU room, with real aiortc peers on loopback:
each is its own publication, forwarded beside the camera (both media modes), refused by policy
before anything of the offer applies, and shown to a late joiner at once (keyframe on
subscribe)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from media.client import ClientPeer, RemoteStats
from media.config import MediaConfig
from media.remb import START_BITRATE, PublisherRemb
from media.room import SfuRoom
from media.sfu import Sfu
from media.sources import SOURCES, SourceForbidden

LOOPBACK = ("127.0.0.1",)


class Recorder:
    """The RoomObserver: renegotiation requests queue up; shares are logged."""

    def __init__(self) -> None:
        self.renegotiate: asyncio.Queue[tuple[str, dict[str, int]]] = asyncio.Queue()
        self.shares: list[tuple[str, str, bool]] = []

    def tracks_changed(self, participant: str) -> None:
        pass

    def renegotiation_needed(self, participant: str, recv: dict[str, int]) -> None:
        self.renegotiate.put_nowait((participant, recv))

    def first_frame(self, participant: str, kind: str) -> None:
        pass

    def first_frame_delivered(self, participant: str, kind: str) -> None:
        pass

    def peer_state_changed(self, participant: str, state: str) -> None:
        pass

    def video_unsupported(self, participant: str, publisher: str, codec: str) -> None:
        pass

    def source_changed(self, participant: str, source: str, on: bool) -> None:
        self.shares.append((participant, source, on))


class Room:
    def __init__(self, room: SfuRoom, recorder: Recorder) -> None:
        self.room = room
        self.recorder = recorder
        self.clients: dict[str, ClientPeer] = {}

    async def negotiate(self, name: str, allowed: frozenset[str] = SOURCES) -> None:
        client = self.clients[name]
        offer = await client.create_offer()
        answer = await self.room.handle_offer(name, offer, client.sources, allowed)
        await client.apply_answer(answer)
        await self.settle()

    async def join(self, name: str, hue: int) -> ClientPeer:
        client = ClientPeer(ice_hosts=LOOPBACK, width=320, height=240, hue=hue)
        self.clients[name] = client
        await self.room.connect(name)
        client.ensure_recv_slots(self.room.recv_slots_for(name))
        await self.negotiate(name)
        return client

    async def settle(self) -> None:
        """Answer renegotiation requests as the browser does; refresh every slot map."""
        while not self.recorder.renegotiate.empty():
            name, recv = self.recorder.renegotiate.get_nowait()
            client = self.clients[name]
            client.ensure_recv_slots(recv)
            answer = await self.room.handle_offer(name, await client.create_offer(), client.sources)
            await client.apply_answer(answer)
        for name, client in self.clients.items():
            if name in self.room.peers:
                client.track_map = self.room.peers[name].track_map()


def sees(*keys: str, frames: int = 10) -> Callable[[dict[str, RemoteStats]], bool]:
    def predicate(remotes: dict[str, RemoteStats]) -> bool:
        return all(k in remotes and remotes[k].video_frames >= frames for k in keys)

    return predicate


async def frames_grow(client: ClientPeer, key: str, more: int, timeout: float) -> None:
    start = client.remotes[key].video_frames if key in client.remotes else 0
    await client.wait_until(sees(key, frames=start + more), timeout)


@pytest.fixture(params=["forward", "relay"])
async def room(request: pytest.FixtureRequest) -> AsyncIterator[Room]:
    sfu = Sfu(MediaConfig(ice_hosts=LOOPBACK, media_mode=request.param))
    recorder = Recorder()
    r = Room(sfu.room("visit", recorder), recorder)
    yield r
    for client in r.clients.values():
        await client.close()
    await sfu.close()


async def test_a_shared_screen_is_its_own_track_to_everyone_and_goes_when_stopped(
    room: Room,
) -> None:
    gp = await room.join("gp", hue=0)
    nurse = await room.join("nurse", hue=80)
    citizen = await room.join("citizen", hue=160)
    gp.add_source("screen", hue=200, width=640)
    await room.negotiate("gp")
    for viewer in (nurse, citizen):
        # Three remote videos: the two faces and the GP's screen, the screen at its own size.
        await viewer.wait_until(
            sees(
                "gp",
                "gp:screen",
                *({"nurse", "citizen"} - {n for n, c in room.clients.items() if c is viewer}),
            ),
            timeout=25,
        )
        assert viewer.remotes["gp:screen"].width == 640
        assert viewer.remotes["gp"].width == 320
    assert ("gp", "screen", True) in room.recorder.shares

    gp.stop_source("screen")
    await room.negotiate("gp")
    assert ("gp", "screen") not in room.room.publications
    assert ("gp", "screen", False) in room.recorder.shares
    for viewer in (nurse, citizen):
        assert all(
            entry is None or entry.get("source") != "screen" for entry in viewer.track_map.values()
        )
        await frames_grow(viewer, "gp", 5, timeout=10)  # the face goes on

    # Shared again on the same m-line: back for everyone.
    gp.add_source("screen")
    await room.negotiate("gp")
    await frames_grow(nurse, "gp:screen", 5, timeout=15)


async def test_a_late_joiner_sees_a_running_share_and_a_second_camera(room: Room) -> None:
    nurse = await room.join("nurse", hue=80)
    nurse.add_source("camera2", hue=30)
    await room.negotiate("nurse")
    gp = await room.join("gp", hue=0)
    await gp.wait_until(sees("nurse", "nurse:camera2"), timeout=25)
    gp.add_source("screen", hue=200, width=640)
    await room.negotiate("gp")
    await nurse.wait_until(sees("gp:screen", frames=3), timeout=20)
    # Well after the screen's first keyframe: the late joiner needs one of its own.
    joined = time.monotonic()
    citizen = await room.join("citizen", hue=160)
    assert room.room.recv_slots_for("citizen")["video"] >= 4
    await citizen.wait_until(sees("gp", "gp:screen", "nurse", "nurse:camera2", frames=1), 20)
    first_frame = citizen.remotes["gp:screen"].first_frame_seconds
    assert first_frame is not None
    assert time.monotonic() - joined < 20


async def test_a_source_the_policy_forbids_is_refused_and_nothing_applies(room: Room) -> None:
    citizen = await room.join("citizen", hue=160)
    gp = await room.join("gp", hue=0)
    citizen.add_source("screen", hue=50)
    offer = await citizen.create_offer()
    before = room.room.peers["citizen"].pc.remoteDescription.sdp
    with pytest.raises(SourceForbidden) as refused:
        await room.room.handle_offer(
            "citizen", offer, citizen.sources, frozenset({"microphone", "camera", "camera2"})
        )
    assert refused.value.code == "source-forbidden"
    assert ("citizen", "screen") not in room.room.publications
    assert room.room.peers["citizen"].pc.remoteDescription.sdp == before
    assert all(entry is None or entry.get("source") != "screen" for entry in gp.track_map.values())
    # An unannounced second video track is no way around it: it would be a second camera.
    unannounced = await citizen.create_offer()
    with pytest.raises(Exception, match="at most one camera"):
        await room.room.handle_offer("citizen", unannounced, {}, SOURCES)


def test_a_publishers_video_tracks_hear_one_estimate_their_sum() -> None:
    """A browser takes each REMB as the cap of all it sends: the camera's estimate alone would
    starve a screen shared beside it, whose subscribers cannot estimate it before it flows."""
    group = PublisherRemb()
    camera, screen = object(), object()
    group.published(camera, True)
    assert group.estimate(camera, 500_000) == 500_000
    group.published(screen, True)
    assert group.estimate(camera, 500_000) == 500_000 + START_BITRATE
    assert group.estimate(screen, 200_000) == 700_000
    group.published(screen, False)
    assert group.estimate(camera, 400_000) == 400_000
    assert group.estimate(screen, 900_000) is None  # stopped: caps nothing


async def test_a_sharer_who_reconnects_and_shares_again_is_seen_again(room: Room) -> None:
    """A reload or a dropped network while sharing: the new connection's screen reaches the
    others, on the slots they already have (both media modes)."""
    gp = await room.join("gp", hue=0)
    nurse = await room.join("nurse", hue=80)
    gp.add_source("screen", hue=200, width=640)
    await room.negotiate("gp")
    await nurse.wait_until(sees("gp", "gp:screen", frames=3), timeout=25)

    await room.room.disconnect("gp")
    await gp.close()
    again = await room.join("gp", hue=0)
    again.add_source("screen", hue=200, width=640)
    await room.negotiate("gp")
    await frames_grow(nurse, "gp", 5, timeout=20)
    await frames_grow(nurse, "gp:screen", 5, timeout=20)
    assert nurse.remotes["gp:screen"].width == 640
