"""The operator's load generator: N three-way visits of light bots in one process.

Each visit is booked through the HTTP API and joined by three bots that send a loop encoded once
and count encoded frames without decoding them (`media.encoded`, `ClientPeer(decode=False)`), so
the numbers describe the server rather than the load generator.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from media.encoded import EncodedMedia
from signaling.bot import BotError, BotOptions, BotReport, default_ice_hosts, run_bot

VISIT_BODY: dict[str, Any] = {
    "kind": "consultation",
    "waiting_room": False,
    "participants": [{"role": "citizen"}, {"role": "nurse"}, {"role": "gp"}],
}
#: A stream counts as smooth at this delivered frame rate or more (30 fps sent).
SMOOTH_FPS = 27.0

VisitCreator = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class LoadTestOptions:
    url: str
    rooms: int
    seconds: float
    width: int = 640
    height: int = 480
    fps: int = 30


def token_visit_creator(url: str, token: str) -> VisitCreator:
    """Book visits at `url` with an operator's bearer token."""

    async def create(body: dict[str, Any]) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url.rstrip("/") + "/api/visits",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            data: dict[str, Any] = await r.json()
            if r.status >= 400:
                error = data.get("error", {})
                raise BotError(str(error.get("code")), str(error.get("message")))
            return data

    return create


@dataclass
class BotOutcome:
    visit: str
    report: BotReport | None
    error: dict[str, str] | None


async def _one_bot(visit: str, link: str, options: BotOptions) -> BotOutcome:
    try:
        return BotOutcome(visit, await run_bot(link, options), None)
    except BotError as exc:
        return BotOutcome(visit, None, {"code": exc.code, "message": exc.message})
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return BotOutcome(visit, None, {"code": type(exc).__name__, "message": str(exc)})


async def run_load_test(options: LoadTestOptions, create_visit: VisitCreator) -> dict[str, Any]:
    encoded = await asyncio.to_thread(
        EncodedMedia.build, options.width, options.height, options.fps
    )
    visits = await asyncio.gather(*(create_visit(VISIT_BODY) for _ in range(options.rooms)))
    bot_options = BotOptions(
        seconds=options.seconds,
        ice_hosts=default_ice_hosts(options.url),
        width=options.width,
        height=options.height,
        fps=options.fps,
        decode=False,
        encoded=encoded,
    )
    outcomes = await asyncio.gather(
        *(
            _one_bot(visit["visit"], link, bot_options)
            for visit in visits
            for link in visit["links"].values()
        )
    )
    return summarize(len(visits), outcomes)


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    return {
        "p50": None if p50 is None else round(p50, 3),
        "p95": None if p95 is None else round(p95, 3),
    }


def summarize(visits: int, outcomes: Sequence[BotOutcome]) -> dict[str, Any]:
    joined = [o for o in outcomes if o.report is not None and o.report.join_seconds is not None]
    members: dict[str, set[str]] = {}
    for o in joined:
        assert o.report is not None
        members.setdefault(o.visit, set()).add(o.report.participant)
    video_fps: list[float] = []
    audio_fps: list[float] = []
    first_frames: list[float] = []
    latency_p50: list[float] = []
    latency_p95: list[float] = []
    for o in joined:
        assert o.report is not None
        remotes = {r["participant"]: r for r in o.report.remotes}
        # Every other bot that joined the same visit is a stream this bot should receive.
        for other in sorted(members[o.visit] - {o.report.participant}):
            remote = remotes.get(other, {})
            video_fps.append(float(remote.get("video_fps", 0.0)))
            audio_fps.append(float(remote.get("audio_fps", 0.0)))
            if remote.get("first_frame_seconds") is not None:
                first_frames.append(float(remote["first_frame_seconds"]))
            if remote.get("latency_ms"):
                latency_p50.append(float(remote["latency_ms"]["p50"]))
                latency_p95.append(float(remote["latency_ms"]["p95"]))
    join_seconds = [
        o.report.join_seconds
        for o in joined
        if o.report is not None and o.report.join_seconds is not None
    ]
    attempted = len(outcomes)
    return {
        "visits_created": visits,
        "bots_attempted": attempted,
        "bots_joined": len(joined),
        "join_success_rate": round(len(joined) / attempted, 3) if attempted else 0.0,
        "join_seconds": _spread(join_seconds),
        "first_frame_seconds": _spread(first_frames),
        "streams": len(video_fps),
        "streams_with_video": sum(1 for fps in video_fps if fps > 0),
        "video_fps": {
            "median": round(statistics.median(video_fps), 2) if video_fps else None,
            "min": round(min(video_fps), 2) if video_fps else None,
            "share_at_least_27": (
                round(sum(1 for fps in video_fps if fps >= SMOOTH_FPS) / len(video_fps), 3)
                if video_fps
                else None
            ),
        },
        "audio_fps_median": round(statistics.median(audio_fps), 2) if audio_fps else None,
        # Per stream, from the publishing bot's sender to the subscribing bot (one clock: the
        # bots share this process): the median stream's p50 and the 95th percentile stream's p95.
        "frame_latency_ms": {
            "p50": percentile(latency_p50, 0.5),
            "p95": percentile(latency_p95, 0.95),
        },
        "errors": [o.error for o in outcomes if o.error is not None],
    }


def render(summary: dict[str, Any]) -> str:
    video = summary["video_fps"]
    lines = [
        f"visits created     {summary['visits_created']}",
        f"bots joined        {summary['bots_joined']}/{summary['bots_attempted']}"
        f" ({summary['join_success_rate']:.1%})",
        f"join seconds       p50 {summary['join_seconds']['p50']}"
        f"  p95 {summary['join_seconds']['p95']}",
        f"first frame        p50 {summary['first_frame_seconds']['p50']}"
        f"  p95 {summary['first_frame_seconds']['p95']}",
        f"video fps/stream   median {video['median']}  min {video['min']}"
        f"  >= 27 fps: {video['share_at_least_27']} of {summary['streams']} streams",
        f"audio fps median   {summary['audio_fps_median']}",
        f"frame latency ms   p50 {summary['frame_latency_ms']['p50']}"
        f"  p95 {summary['frame_latency_ms']['p95']}",
    ]
    lines += [f"error              {e['code']}: {e['message']}" for e in summary["errors"]]
    return "\n".join(lines)
