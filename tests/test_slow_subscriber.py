"""A slow subscriber never slows the others: its down tracks drop, theirs keep full rate."""

from __future__ import annotations

import asyncio
from typing import Any

from media.downtrack import QUEUE_FRAMES
from tests.test_media_room import Harness, harness, sees  # noqa: F401

#: The slow participant's link carries 20 packets a second: far less than 30 fps of video.
SLOW_LINK_SECONDS_PER_PACKET = 0.05


async def test_a_congested_subscriber_does_not_hold_back_the_others(
    harness: Harness,  # noqa: F811
) -> None:
    await harness.join("gp")
    fast = await harness.join("nurse")
    slow = await harness.join("citizen")
    await fast.wait_until(sees("gp", video=10), timeout=20)
    await slow.wait_until(sees("gp", video=10), timeout=20)

    # Throttle everything the server sends to the citizen (their one bundled transport).
    slow_peer = harness.room.peers["citizen"]
    transport: Any = slow_peer.slots[0].transceiver.sender.transport
    send = transport._send_rtp

    async def congested(data: bytes) -> None:
        await asyncio.sleep(SLOW_LINK_SECONDS_PER_PACKET)  # the simulated link's own delay
        await send(data)

    transport._send_rtp = congested
    counters = harness.room._counters
    dropped_before = counters.frames_dropped
    start_fast = fast.remotes["gp"].video_frames
    start_slow = slow.remotes["gp"].video_frames

    # Three seconds of the GP's video at full rate reach the nurse...
    await fast.wait_until(sees("gp", video=start_fast + 90), timeout=20)
    delivered_slow = slow.remotes["gp"].video_frames - start_slow
    # ...while the citizen, on 20 packets a second, gets far fewer, and the server drops for
    # them instead of queueing without end.
    assert delivered_slow < 60
    assert counters.frames_dropped > dropped_before
    for slot in slow_peer.slots:
        assert len(slot.track._queue) <= QUEUE_FRAMES[slot.kind]
