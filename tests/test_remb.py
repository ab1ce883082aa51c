"""The weakest subscriber's bandwidth estimate (REMB) reaches the publisher, through the SFU."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from media.client import ClientPeer
from media.remb import RembThrottle, remb_bitrate, remb_packet, send_remb, watch_remb
from tests.test_media_room import Harness, harness, sees  # noqa: F401


class Downlink:
    """What `subscriber`'s real peer estimates of the video it receives of `publisher`: its own
    receiver's REMBs all announce `bitrate`, as a browser on a link that narrow would."""

    def __init__(self, harness: Harness, subscriber: str, publisher: str) -> None:  # noqa: F811
        client = harness.clients[subscriber]
        (mid,) = [
            m
            for m, entry in client.track_map.items()
            if entry == {"participant": publisher, "kind": "video", "source": "camera"}
        ]
        (slot,) = [s for s in harness.room.peers[subscriber].slots if s.mid == mid]
        (self._receiver,) = [t.receiver for t in client.pc.getTransceivers() if t.mid == mid]
        self._media_ssrc: int = slot.transceiver.sender._ssrc
        self.bitrate: int | None = None
        receiver: Any = self._receiver
        send: Callable[[Any], Awaitable[None]] = receiver._send_rtcp

        async def send_rtcp(packet: Any) -> None:
            remb = remb_bitrate(packet)
            if remb is not None and self.bitrate is not None:
                packet = remb_packet(packet.ssrc, self.bitrate, remb[1])
            await send(packet)

        receiver._send_rtcp = send_rtcp

    async def estimate(self, bitrate: int) -> None:
        """From now on the subscriber estimates `bitrate`; it says so at once."""
        self.bitrate = bitrate
        await send_remb(self._receiver, bitrate, self._media_ssrc)


def remb_heard_by(client: ClientPeer) -> asyncio.Queue[int]:
    """Every REMB bitrate that reaches `client`'s video sender (its publisher side)."""
    heard: asyncio.Queue[int] = asyncio.Queue()
    sender = next(t.sender for t in client.pc.getTransceivers() if t.kind == "video")
    watch_remb(sender, heard.put_nowait)
    return heard


async def until_at_most(heard: asyncio.Queue[int], bitrate: int) -> int:
    """The first bitrate heard that is at most `bitrate`."""
    while (value := await heard.get()) > bitrate:
        pass
    return value


async def test_the_weakest_subscribers_estimate_caps_the_publisher(
    harness: Harness,  # noqa: F811
) -> None:
    gp = await harness.join("gp")
    nurse = await harness.join("nurse")
    citizen = await harness.join("citizen")
    for client in (nurse, citizen):
        await client.wait_until(sees("gp", video=10), timeout=20)
    heard = remb_heard_by(gp)
    nurse_link, citizen_link = Downlink(harness, "nurse", "gp"), Downlink(harness, "citizen", "gp")

    # The server makes no estimate of its own: the GP hears what its subscribers estimate.
    await nurse_link.estimate(40_000)
    await asyncio.wait_for(until_at_most(heard, 40_000), timeout=10)
    # A narrower subscriber lowers the cap at once...
    await citizen_link.estimate(20_000)
    assert await asyncio.wait_for(until_at_most(heard, 20_000), timeout=10) == 20_000
    # ...and from then on whatever the server tells the GP stays under it, while the citizen's
    # estimate stands.
    await nurse_link.estimate(2_000_000)
    for _ in range(3):
        assert await asyncio.wait_for(heard.get(), timeout=10) <= 20_000
    # The others' video went on meanwhile.
    await citizen.wait_until(sees("gp", video=citizen.remotes["gp"].video_frames + 30), timeout=10)
    # When the narrow subscriber leaves, the GP may send what the nurse can take again.
    await harness.room.leave("citizen")

    async def above(bitrate: int) -> int:
        while (value := await heard.get()) <= bitrate:
            pass
        return value

    assert await asyncio.wait_for(above(20_000), timeout=10) == 2_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_estimates_reach_the_publisher_five_times_a_second_unless_they_fall() -> None:
    clock = Clock()
    throttle = RembThrottle(clock)
    assert throttle.admit(1_000_000)  # the first estimate goes out
    clock.now += 0.01
    assert not throttle.admit(1_000_000)  # aiortc's receiver would send one per packet
    assert not throttle.admit(980_000)  # a 2 % dip waits for the interval
    assert throttle.admit(900_000)  # a fall of more than 3 % goes out at once
    clock.now += 0.19
    assert not throttle.admit(1_200_000)  # measured from the last one sent
    clock.now += 0.01
    assert throttle.admit(1_200_000)
    sent = 0
    for _ in range(1000):  # a second of per-millisecond estimates, steady
        clock.now += 0.001
        sent += throttle.admit(1_200_000)
    assert sent == 5
