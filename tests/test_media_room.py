"""The SFU room with real aiortc peers on loopback: forwarding, reconnects, slot reuse."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from media.client import ClientPeer, RemoteStats
from media.config import MediaConfig
from media.directreceive import DirectReceive
from media.fanout import CFanout
from media.room import SfuRoom
from media.sfu import Sfu

LOOPBACK = ("127.0.0.1",)


class Recorder:
    """The RoomObserver a test sees: renegotiation requests queue up to be answered."""

    def __init__(self) -> None:
        self.renegotiate: asyncio.Queue[tuple[str, dict[str, int]]] = asyncio.Queue()
        self.tracks_changed_for: list[str] = []
        self.first_frames: set[tuple[str, str]] = set()
        self.unsupported: list[tuple[str, str, str]] = []
        #: Set on each first frame and each codec report, for tests that wait for them.
        self.changed = asyncio.Event()

    def tracks_changed(self, participant: str) -> None:
        self.tracks_changed_for.append(participant)

    def renegotiation_needed(self, participant: str, recv: dict[str, int]) -> None:
        self.renegotiate.put_nowait((participant, recv))

    def first_frame(self, participant: str, kind: str) -> None:
        self.first_frames.add((participant, kind))
        self.changed.set()

    def first_frame_delivered(self, participant: str, kind: str) -> None:
        self.first_frames.add((participant, f"{kind}-down"))

    def peer_state_changed(self, participant: str, state: str) -> None:
        pass

    def video_unsupported(self, participant: str, publisher: str, codec: str) -> None:
        self.unsupported.append((participant, publisher, codec))
        self.changed.set()

    def source_changed(self, participant: str, source: str, on: bool) -> None:
        pass

    async def until(self, check: Callable[[], bool], timeout: float = 30) -> None:
        """Wait until `check()` holds, re-checked at each first frame or codec report."""
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()


class Harness:
    def __init__(self, room: SfuRoom, recorder: Recorder) -> None:
        self.room = room
        self.recorder = recorder
        self.clients: dict[str, ClientPeer] = {}

    async def negotiate(self, name: str) -> None:
        client = self.clients[name]
        answer = await self.room.handle_offer(name, await client.create_offer())
        await client.apply_answer(answer)
        client.track_map = self.room.peers[name].track_map()

    async def join(self, name: str, hue: int = 0, **options: Any) -> ClientPeer:
        """`options` go to ClientPeer (`send`, `video_codecs`)."""
        old = self.clients.pop(name, None)
        if old is not None:
            await old.close()
        client = ClientPeer(ice_hosts=LOOPBACK, width=320, height=240, hue=hue, **options)
        self.clients[name] = client
        await self.room.connect(name)
        client.ensure_recv_slots(self.room.recv_slots_for(name))
        await self.negotiate(name)
        await self.settle()
        return client

    async def settle(self) -> None:
        """Answer every renegotiation request, as the browser does, and refresh slot maps."""
        while not self.recorder.renegotiate.empty():
            name, recv = self.recorder.renegotiate.get_nowait()
            self.clients[name].ensure_recv_slots(recv)
            await self.negotiate(name)
        for name, client in self.clients.items():
            if name in self.room.peers:
                client.track_map = self.room.peers[name].track_map()


def sees(*names: str, video: int = 10, audio: int = 10) -> Callable[[dict[str, RemoteStats]], bool]:
    def predicate(remotes: dict[str, RemoteStats]) -> bool:
        return all(
            n in remotes and remotes[n].video_frames >= video and remotes[n].audio_frames >= audio
            for n in names
        )

    return predicate


@pytest.fixture(params=["off", "on"], ids=["python", "compiled"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A room forwarding in Python (fastpath off) or compiled (on: media._fastpath must be
    built, or the Sfu refuses to start)."""
    sfu = Sfu(MediaConfig(ice_hosts=LOOPBACK, fastpath=request.param))
    recorder = Recorder()
    h = Harness(sfu.room("visit", recorder), recorder)
    yield h
    for client in h.clients.values():
        await client.close()
    await sfu.close()


async def test_three_participants_each_receive_the_other_two(harness: Harness) -> None:
    for i, name in enumerate(("citizen", "nurse", "gp")):
        await harness.join(name, hue=60 * i)
    for name, client in harness.clients.items():
        others = [n for n in harness.clients if n != name]
        await client.wait_until(sees(*others), timeout=20)
        assert all(client.remotes[o].width == 320 for o in others)
    counters = harness.room._counters
    assert counters.frames_forwarded > counters.frames_received > 0
    fanout = harness.room._fanout
    if isinstance(fanout, CFanout):
        assert fanout.datagrams > fanout.batches > 0  # the compiled path sent, in batches
    assert {(n, k) for n in harness.clients for k in ("audio", "video")} <= (
        harness.recorder.first_frames
    )


async def test_a_late_subscriber_gets_video_through_a_forwarded_keyframe_request(
    harness: Harness,
) -> None:
    await harness.join("gp")
    await harness.join("nurse")
    await harness.clients["nurse"].wait_until(sees("gp"), timeout=20)
    # The GP's encoder has long since sent its first keyframe; a new subscriber needs another.
    citizen = await harness.join("citizen")
    await citizen.wait_until(sees("gp", "nurse"), timeout=20)
    assert harness.room._counters.keyframe_requests_sent >= 1


async def test_a_reconnecting_publisher_comes_back_in_the_same_slot(harness: Harness) -> None:
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


async def test_a_leaver_frees_slots_that_the_next_participant_reuses(harness: Harness) -> None:
    await harness.join("gp")
    nurse = await harness.join("nurse")
    await harness.join("citizen")
    await nurse.wait_until(sees("gp", "citizen"), timeout=20)
    mids = set(nurse.track_map)

    await harness.room.leave("citizen")
    await harness.clients.pop("citizen").close()
    harness.recorder.tracks_changed_for.clear()
    await harness.settle()
    assert [entry for entry in nurse.track_map.values() if entry is None] != []

    relative = await harness.join("relative")
    assert harness.recorder.renegotiate.empty()
    assert "nurse" in harness.recorder.tracks_changed_for
    await nurse.wait_until(sees("relative"), timeout=20)
    assert set(nurse.track_map) == mids  # no new m-lines for the nurse
    await relative.wait_until(sees("gp", "nurse"), timeout=20)


async def test_media_comes_in_the_socket_callback_and_forged_packets_change_nothing(
    harness: Harness,
) -> None:
    await harness.join("gp")
    nurse = await harness.join("nurse")
    await nurse.wait_until(sees("gp"), timeout=20)
    dtls = harness.room.peers["gp"].pc.getTransceivers()[0].receiver.transport
    direct = DirectReceive.of(dtls)
    assert direct.packets > 0  # the GP's media took the direct path
    # Someone who knows the server's port and the GP's SSRC (both are visible on the network)
    # sends RTP that is not authentic: SRTP refuses it, and the GP's video goes on.
    local = dtls.transport._connection._nominated[1].local_candidate
    ssrc = next(iter(dtls._rtp_router.ssrc_table))
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for sequence in range(50):
            header = struct.pack("!BBHLL", 0x80, 96, sequence, 3000 * sequence, ssrc)
            forger.sendto(header + os.urandom(200), (local.host, local.port))
        frames = nurse.remotes["gp"].video_frames
        await nurse.wait_until(sees("gp", video=frames + 15), timeout=20)
    finally:
        forger.close()
    assert direct.dropped >= 50
    assert harness.room._counters.packets_refused >= 50  # what /health shows operators
    assert direct.errors == 0


async def gp_and_nurse_in_a_call(harness: Harness) -> tuple[ClientPeer, ClientPeer]:
    gp = await harness.join("gp")
    nurse = await harness.join("nurse")
    await nurse.wait_until(sees("gp"), timeout=20)
    await gp.wait_until(sees("nurse"), timeout=20)
    return gp, nurse


def send_to_gps_media_port(harness: Harness, datagrams: list[bytes]) -> None:
    """Datagrams from a stranger's socket to the server's end of the GP's connection."""
    dtls = harness.room.peers["gp"].pc.getTransceivers()[0].receiver.transport
    local = dtls.transport._connection._nominated[1].local_candidate
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for datagram in datagrams:
            stranger.sendto(datagram, (local.host, local.port))


async def both_directions_go_on(gp: ClientPeer, nurse: ClientPeer) -> None:
    """A second more of video each way: what the GP sends, and what the GP is sent."""
    frames = nurse.remotes["gp"].video_frames
    await nurse.wait_until(sees("gp", video=frames + 30), timeout=20)
    frames = gp.remotes["nurse"].video_frames
    await gp.wait_until(sees("nurse", video=frames + 30), timeout=20)


async def test_datagrams_that_would_end_aiortcs_receiving_task_are_refused(
    harness: Harness,
) -> None:
    gp, nurse = await gp_and_nurse_in_a_call(harness)
    refused = harness.room._counters.packets_refused
    # An empty datagram, and an SRTP-looking one too long for pylibsrtp's buffer (with an SSRC
    # nobody uses, so aiortc's own path would have had it).
    send_to_gps_media_port(harness, [b"", b"\x80\x60" + os.urandom(1598)])
    await both_directions_go_on(gp, nurse)
    assert harness.room._counters.packets_refused == refused + 2


def odd_datagrams() -> list[bytes]:
    """What anyone who can reach a media port might send: truncated or garbled STUN, DTLS
    records (a plaintext close_notify among them), RTP and RTCP of every awkward length."""
    rng = random.Random(6)

    def noise(n: int) -> bytes:
        return rng.randbytes(n)

    stun = struct.pack("!HHI", 0x0001, 8, 0x2112A442)
    out = [b"", bytes([0, 1]), stun + noise(20), stun[:2] + struct.pack("!H", 2000) + noise(2016)]
    close_notify = struct.pack("!BHH", 21, 0xFEFD, 0) + (1).to_bytes(6, "big") + b"\x00\x02\x01\x00"
    out += [close_notify, bytes([22, 0xFE, 0xFD]) + noise(100), bytes([23]) + noise(3000)]
    for n in (1, 2, 11, 12, 20, 1500, 1501, 9000):
        out += [b"\x80" + noise(n - 1), b"\x80\xc8" + noise(max(n - 2, 0))]
    out += [b"\x40\x00" + noise(20), b"\xff" + noise(50)]
    return out


async def test_a_burst_of_odd_datagrams_on_a_media_port_changes_nothing(harness: Harness) -> None:
    gp, nurse = await gp_and_nurse_in_a_call(harness)
    send_to_gps_media_port(harness, odd_datagrams())
    await both_directions_go_on(gp, nurse)
