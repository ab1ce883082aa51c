"""Loss toward a subscriber: NACKs reach the server and its retransmissions keep video flowing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_media_room import Harness, harness, sees  # noqa: F401

#: Every 20th packet on the lossy path is lost: 5 %.
DROP_EVERY = 20


@pytest.mark.xfail(
    strict=True,
    reason="open (media performance issue): at 5 % loss toward an aiortc subscriber it decoded "
    "3-58 of the 150 frames a clean subscriber decoded, though RTX is negotiated both ways; "
    "the cause (server retransmission or aiortc's receiving jitter buffer) is not established",
)
async def test_five_percent_loss_toward_a_subscriber_keeps_video_flowing(
    harness: Harness,  # noqa: F811
) -> None:
    await harness.join("gp")
    clean = await harness.join("nurse")
    lossy = await harness.join("citizen")
    await clean.wait_until(sees("gp", video=10), timeout=20)
    await lossy.wait_until(sees("gp", video=10), timeout=20)

    transport: Any = harness.room.peers["citizen"].slots[0].transceiver.sender.transport
    send = transport._send_rtp
    sent = 0
    dropped = 0

    async def lossy_link(data: bytes) -> None:
        nonlocal sent, dropped
        sent += 1
        if sent % DROP_EVERY == 0:
            dropped += 1
            return
        await send(data)

    transport._send_rtp = lossy_link
    start_clean = clean.remotes["gp"].video_frames
    start_lossy = lossy.remotes["gp"].video_frames
    # Five seconds of the GP's video reach the clean subscriber...
    await clean.wait_until(sees("gp", video=start_clean + 150), timeout=30)
    got_clean = clean.remotes["gp"].video_frames - start_clean
    got_lossy = lossy.remotes["gp"].video_frames - start_lossy
    assert dropped > 20  # the link really lost packets
    # ...and retransmission keeps the lossy one within 10 % of it.
    assert got_lossy >= 0.9 * got_clean, (got_lossy, got_clean)
