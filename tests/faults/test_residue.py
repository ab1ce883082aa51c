"""An ended visit leaves nothing behind in the server: no asyncio task, (almost) no memory.

A real server process; each visit has a GP on a plain socket and a citizen and a nurse as real
aiortc peers (light bots in this process) sending video and audio to each other. Once media
flows both ways the GP ends the visit. Tasks are counted by the server itself (/healthz), memory
is the server process's RSS (psutil), both after a warm-up.
"""

from __future__ import annotations

import asyncio

import aiohttp
import psutil
import pytest

from media.encoded import EncodedMedia
from signaling.bot import Bot, BotOptions
from tests.support.servers import RunningServer
from tests.support.waiting import until

WARM_UP = 3
VISITS = 20
#: RSS a visit may leave behind once it has ended, on average over VISITS visits.
RSS_PER_VISIT = 1_000_000


async def one_visit(server: RunningServer, encoded: EncodedMedia) -> None:
    """Book, two peers with media and a host, media both ways, the host ends it."""
    visit = await server.book(waiting_room=False)
    links = visit["links"]
    async with aiohttp.ClientSession() as http:
        host = await http.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
        token = links["gp"].split("#", 1)[1]
        await host.send_json({"type": "join", "token": token, "visit": visit["visit"]})
        joined = await host.receive_json(timeout=15)
        assert joined["type"] == "joined", joined
        bots = [
            Bot(
                links[role],
                BotOptions(
                    seconds=60, decode=False, encoded=encoded, width=320, height=240, hue=hue
                ),
            )
            for role, hue in (("citizen", 0), ("nurse", 90))
        ]
        runs = [asyncio.create_task(bot.run()) for bot in bots]

        async def media_both_ways() -> bool:
            for run in runs:
                if run.done():
                    run.result()  # a bot that stopped early: show why
                    pytest.fail("a bot stopped before media flowed")
            return all(bot.video_from() for bot in bots)

        await until(media_both_ways, 30, "video between the citizen and the nurse")
        await host.send_json({"type": "end"})
        # The bots stop on `visit-ended`.
        await asyncio.wait_for(asyncio.gather(*runs), timeout=30)
        await host.close()


async def test_ended_visits_leave_no_tasks_and_under_1_mb_each(server: RunningServer) -> None:
    encoded = await asyncio.to_thread(EncodedMedia.build, 320, 240, 30, 0)
    process = psutil.Process(server.process.pid)

    async def settled() -> bool:
        health = await server.health()
        return health["visits"] == 0 and health["participants"] == 0

    for _ in range(WARM_UP):
        await one_visit(server, encoded)
    await until(settled, 30, "the warm-up visits to be gone")
    tasks_before = (await server.health())["tasks"]
    rss_before = process.memory_info().rss

    for _ in range(VISITS):
        await one_visit(server, encoded)

    async def tasks_back() -> bool:
        health = await server.health()
        return await settled() and health["tasks"] <= tasks_before

    try:
        await until(tasks_back, 30, "every task of the ended visits to end")
    finally:
        health = await server.health()
        rss_after = process.memory_info().rss
        per_visit = (rss_after - rss_before) / VISITS
        print(
            f"after {VISITS} ended visits: tasks {tasks_before} -> {health['tasks']}"
            f" ({(health['tasks'] - tasks_before) / VISITS:.2f} per visit), hubs"
            f" {health['visits']}, RSS {rss_before / 1e6:.1f} -> {rss_after / 1e6:.1f} MB"
            f" ({per_visit / 1e6:.2f} MB per visit)"
        )
    assert per_visit < RSS_PER_VISIT
