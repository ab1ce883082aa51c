"""A slow subscriber never slows the others: the server writes to everyone as the publisher
sends, and what a narrow link cannot carry is lost on that link, not queued at the server."""

from __future__ import annotations

from typing import Any

from media.downtrack import DownTrack
from tests.support.links import Link
from tests.test_media_room import Harness, harness, sees  # noqa: F401

#: The slow participant's link carries 20 packets a second: far less than 30 fps of video.
SLOW_LINK_PACKETS_PER_SECOND = 20


async def test_a_congested_subscriber_does_not_hold_back_the_others(
    harness: Harness,  # noqa: F811
) -> None:
    await harness.join("gp")
    fast = await harness.join("nurse")
    slow = await harness.join("citizen")
    await fast.wait_until(sees("gp", video=10), timeout=20)
    await slow.wait_until(sees("gp", video=10), timeout=20)

    # Police everything the server sends to the citizen (their one bundled transport).
    slow_peer = harness.room.peers["citizen"]
    transport: Any = slow_peer.slots[0].transceiver.sender.transport
    link = Link(transport, packets_per_second=SLOW_LINK_PACKETS_PER_SECOND)

    def gp_video_writer(participant: str) -> Any:
        peer = harness.room.peers[participant]
        publication = harness.room.publications[("gp", "video")]
        (slot,) = [s for s in peer.slots if s.track.publication is publication]
        assert isinstance(slot.track, DownTrack)
        return slot.track._writer

    to_fast, to_slow = gp_video_writer("nurse"), gp_video_writer("citizen")
    sent_fast, sent_slow = to_fast.packets_sent, to_slow.packets_sent
    start_fast = fast.remotes["gp"].video_frames
    start_slow = slow.remotes["gp"].video_frames

    # Three seconds of the GP's video at full rate reach the nurse...
    await fast.wait_until(sees("gp", video=start_fast + 90), timeout=20)
    delivered_slow = slow.remotes["gp"].video_frames - start_slow
    # ...while the citizen, on 20 packets a second, gets far fewer: their link lost the rest.
    assert delivered_slow < 60
    assert link.dropped > 0
    # The server wrote the GP's video to the citizen as it did to the nurse (give or take the
    # retransmissions and keyframes the citizen asked for): nothing waited for the slow link.
    assert to_slow.packets_sent - sent_slow >= 0.8 * (to_fast.packets_sent - sent_fast)
