"""Packet loss: toward a subscriber, retransmissions keep video flowing; from a publisher, audio
is forwarded without waiting for what was lost, and NACKs recover the video."""

from __future__ import annotations

from collections.abc import Callable

from media.client import ClientPeer, RemoteStats
from media.rtt import peer_rtt
from tests.support.links import Link
from tests.test_media_room import Harness, harness, sees  # noqa: F401

#: Every 20th packet on the lossy path is lost: 5 %.
DROP_EVERY = 20


async def test_five_percent_loss_toward_a_subscriber_keeps_video_flowing(
    harness: Harness,  # noqa: F811
) -> None:
    await harness.join("gp")
    clean = await harness.join("nurse")
    lossy = await harness.join("citizen")
    await clean.wait_until(sees("gp", video=10), timeout=20)
    await lossy.wait_until(sees("gp", video=10), timeout=20)

    link = Link(
        harness.room.peers["citizen"].slots[0].transceiver.sender.transport, drop_every=DROP_EVERY
    )
    start_clean = clean.remotes["gp"].video_frames
    start_lossy = lossy.remotes["gp"].video_frames
    # Five seconds of the GP's video reach the clean subscriber...
    await clean.wait_until(sees("gp", video=start_clean + 150), timeout=30)
    got_clean = clean.remotes["gp"].video_frames - start_clean
    got_lossy = lossy.remotes["gp"].video_frames - start_lossy
    assert link.dropped > 20  # the link really lost packets
    # ...and retransmission keeps the lossy one within 10 % of it.
    assert got_lossy >= 0.9 * got_clean, (got_lossy, got_clean)


#: Opus frames of 20 ms: the RTP timestamp (48 kHz) advances this much per frame.
AUDIO_STEP = 960
AUDIO_FPS = 50


def audio_at(name: str, timestamp: int) -> Callable[[dict[str, RemoteStats]], bool]:
    """The remote's audio timeline has reached `timestamp`."""

    def predicate(remotes: dict[str, RemoteStats]) -> bool:
        stats = remotes.get(name)
        return stats is not None and (stats.audio_timestamp or 0) >= timestamp

    return predicate


def audio_point(client: ClientPeer, name: str) -> tuple[int, int]:
    stats = client.remotes[name]
    assert stats.audio_timestamp is not None
    return stats.audio_frames, stats.audio_timestamp


async def test_five_percent_loss_from_a_publisher_keeps_audio_flowing(
    harness: Harness,  # noqa: F811
) -> None:
    gp = await harness.join("gp")
    subscribers = [await harness.join("nurse"), await harness.join("citizen")]
    for client in subscribers:
        await client.wait_until(sees("gp", video=1, audio=10), timeout=20)

    audio = next(t.sender for t in gp.pc.getTransceivers() if t.kind == "audio")
    link = Link(audio.transport, {audio._ssrc}, drop_every=DROP_EVERY)
    # A second of loss first, so the window below measures the steady state under loss.
    for client in subscribers:
        _, now = audio_point(client, "gp")
        await client.wait_until(audio_at("gp", now + AUDIO_FPS * AUDIO_STEP), timeout=20)
    for client in subscribers:
        frames_before, start = audio_point(client, "gp")
        # Five seconds of the GP's audio timeline (not of wall time: delay does not count).
        await client.wait_until(audio_at("gp", start + 5 * AUDIO_FPS * AUDIO_STEP), timeout=30)
        frames_after, end = audio_point(client, "gp")
        per_second = (frames_after - frames_before) * AUDIO_FPS * AUDIO_STEP / (end - start)
        assert per_second >= 47, (per_second, frames_after - frames_before, (end - start))
    assert link.dropped >= 10  # the publisher's link really lost audio packets


async def test_five_percent_loss_from_a_publisher_keeps_video_flowing(
    harness: Harness,  # noqa: F811
) -> None:
    lossy = await harness.join("gp")
    await harness.join("nurse")
    subscriber = await harness.join("citizen")
    await subscriber.wait_until(sees("gp", "nurse", video=10), timeout=20)

    video = next(t.sender for t in lossy.pc.getTransceivers() if t.kind == "video")
    link = Link(video.transport, {video._ssrc, video._rtx_ssrc}, drop_every=DROP_EVERY)
    start_clean = subscriber.remotes["nurse"].video_frames
    start_lossy = subscriber.remotes["gp"].video_frames
    # Five seconds of the nurse's video (a clean publisher) reach the citizen...
    await subscriber.wait_until(sees("nurse", video=start_clean + 150), timeout=30)
    got_clean = subscriber.remotes["nurse"].video_frames - start_clean
    got_lossy = subscriber.remotes["gp"].video_frames - start_lossy
    assert link.dropped >= 5  # the GP's link really lost video packets
    # ...and the server's NACKs and the GP's retransmissions keep the GP's video within 10 %.
    assert got_lossy >= 0.9 * got_clean, (got_lossy, got_clean)
    # The server repeats its NACKs to the GP one measured round trip apart (RTCP reports on its
    # senders toward the GP): a round trip was measured, and paces the retries.
    measured = peer_rtt(harness.room.peers["gp"].pc)
    assert measured is not None and 0 < measured < 0.5, measured
