"""Connection quality from the server's own statistics, with real aiortc peers."""

from __future__ import annotations

import pytest

from media.quality import QualityMeter, level_of
from tests.test_media_room import Harness, harness, sees  # noqa: F401


@pytest.mark.parametrize(
    ("rtt", "up", "down", "silent", "level"),
    [
        (20.0, 0.0, 0.0, False, "good"),
        (350.0, 0.0, 0.0, False, "fair"),
        (20.0, 0.03, None, False, "fair"),
        (20.0, None, 0.09, False, "poor"),
        (700.0, 0.0, 0.0, False, "poor"),
        (None, None, None, True, "poor"),
    ],
)
def test_the_documented_rule(
    rtt: float | None, up: float | None, down: float | None, silent: bool, level: str
) -> None:
    assert level_of(rtt, up, down, silent) == level


async def test_a_healthy_loopback_peer_measures_good(harness: Harness) -> None:  # noqa: F811
    await harness.join("gp")
    nurse = await harness.join("nurse")
    await nurse.wait_until(sees("gp", video=20), timeout=20)
    meter = QualityMeter(harness.room.peers["gp"])
    await meter.sample()
    frames = nurse.remotes["gp"].video_frames
    await nurse.wait_until(sees("gp", video=frames + 30), timeout=20)
    sample = await meter.sample()
    assert sample.level == "good"
    assert sample.fps_up is not None and sample.fps_up > 15
    assert sample.bitrate_up_kbps is not None and sample.bitrate_up_kbps > 10
    assert sample.loss_up == 0.0
