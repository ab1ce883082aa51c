"""Connection quality of one participant, from the server's own statistics.

Every few seconds a sample: round-trip time and loss toward the participant (from the RTCP
receiver reports of their down tracks), loss and jitter from them (our receivers), bitrate each
way and the frame rate they publish. A level (good, fair, poor) is derived by one rule:

    poor   loss either way >= 8 %, or round trip >= 600 ms, or nothing received while publishing
    fair   loss either way >= 2 %, or round trip >= 300 ms
    good   otherwise
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

from media.frames import CLOCK_RATE
from media.peer import MediaPeer


@dataclass(frozen=True)
class QualitySample:
    time: float
    level: str
    rtt_ms: float | None
    loss_up: float | None
    loss_down: float | None
    jitter_ms: float | None
    bitrate_up_kbps: float | None
    bitrate_down_kbps: float | None
    fps_up: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def level_of(
    rtt_ms: float | None, loss_up: float | None, loss_down: float | None, silent: bool
) -> str:
    losses = [x for x in (loss_up, loss_down) if x is not None]
    worst = max(losses, default=0.0)
    rtt = rtt_ms or 0.0
    if silent or worst >= 0.08 or rtt >= 600:
        return "poor"
    if worst >= 0.02 or rtt >= 300:
        return "fair"
    return "good"


class QualityMeter:
    """Keeps the previous counters of one peer so each sample covers one interval."""

    def __init__(self, peer: MediaPeer) -> None:
        self.peer = peer
        self._peer = peer
        self._last: dict[str, float] = {}
        self._at = time.monotonic()

    async def sample(self) -> QualitySample:
        now = time.monotonic()
        elapsed = max(now - self._at, 1e-3)
        self._at = now
        received = lost = 0
        jitters: list[float] = []
        rtts: list[float] = []
        down_losses: list[float] = []
        bytes_in = bytes_out = None
        for transceiver in self._peer.pc.getTransceivers():
            if transceiver.direction == "recvonly":
                report = await transceiver.receiver.getStats()
            elif transceiver.direction == "sendonly":
                report = await transceiver.sender.getStats()
            else:
                continue
            for stats in report.values():
                if isinstance(stats, RTCInboundRtpStreamStats):
                    received += stats.packetsReceived
                    lost += max(stats.packetsLost, 0)
                    jitters.append(stats.jitter * 1000 / CLOCK_RATE.get(stats.kind, 90_000))
                elif isinstance(stats, RTCRemoteInboundRtpStreamStats):
                    if stats.roundTripTime is not None:
                        rtts.append(stats.roundTripTime * 1000)
                    down_losses.append(stats.fractionLost / 256)
                elif isinstance(stats, RTCTransportStats):
                    bytes_in, bytes_out = stats.bytesReceived, stats.bytesSent
        delta_received = received - self._last.get("received", 0)
        delta_lost = lost - self._last.get("lost", 0)
        loss_up = (
            delta_lost / (delta_received + delta_lost) if delta_received + delta_lost > 0 else None
        )
        video = self._peer.up.get("video")
        frames = float(video.frames) if video is not None else 0.0
        fps = (frames - self._last["frames"]) / elapsed if "frames" in self._last else None
        rate_in = self._rate("bytes_in", bytes_in, elapsed)
        rate_out = self._rate("bytes_out", bytes_out, elapsed)
        self._last.update(received=received, lost=lost, frames=frames)
        publishing = bool(self._peer.up)
        silent = publishing and "primed" in self._last and delta_received == 0
        self._last["primed"] = 1
        rtt = max(rtts) if rtts else None
        loss_down = max(down_losses) if down_losses else None
        return QualitySample(
            time=time.time(),
            level=level_of(rtt, loss_up, loss_down, silent),
            rtt_ms=round(rtt, 1) if rtt is not None else None,
            loss_up=round(loss_up, 4) if loss_up is not None else None,
            loss_down=round(loss_down, 4) if loss_down is not None else None,
            jitter_ms=round(max(jitters), 1) if jitters else None,
            bitrate_up_kbps=rate_in,
            bitrate_down_kbps=rate_out,
            fps_up=round(fps, 1) if fps is not None else None,
        )

    def _rate(self, key: str, value: int | None, elapsed: float) -> float | None:
        if value is None:
            return None
        previous = self._last.get(key)
        self._last[key] = float(value)
        if previous is None:
            return None
        return round((value - previous) * 8 / 1000 / elapsed, 1)
