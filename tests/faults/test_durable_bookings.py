"""Bookings are durable: a booking the API acknowledged opens after the live state is lost.

(a) A single-node server on its SQLite file is killed with SIGKILL and started again: its
memory store is empty, yet every booked link joins, a booking changed over the API keeps the
change, a cancelled one stays cancelled, and a visit in progress comes back: its bots reconnect
by themselves and get media again, straight into the call (not into its waiting room).

(b) Two nodes share a redis-server that this test starts on a free port with no persistence:
SIGKILL it and start it again, empty. Every booking still opens, on either node, and the call in
progress keeps its media.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from rooms.eventlog import EventKind, SqlEventLog
from rooms.ids import VisitId
from rooms.sql import open_database
from signaling.bot import Bot, BotReport
from tests.support.bots import finish, light, media_back, seeing_each_other
from tests.support.cluster import (
    PrivateRedis,
    on_node,
    postgres_url,
    redis_server,
    start_node,
)
from tests.support.servers import RunningServer, start_server
from tests.support.waiting import until

# The two nodes' private Redis and shared PostgreSQL, as in the multi-node tests.
__all__ = ["postgres_url", "redis_server"]

#: Bookings made before each fault.
BOOKINGS = 6
#: The longest a bot runs; the tests end the runs once they have seen what they wait for.
BOT_SECONDS = 90.0


async def api(
    server: RunningServer, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.staff_token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.base_url + path, json=body, headers=headers) as response,
    ):
        data: dict[str, Any] = await response.json()
        return response.status, data


async def join_answer(server: RunningServer, link: str) -> dict[str, Any]:
    """Open a signaling socket on `server`, send `join` for `link`, return the first answer."""
    visit, token = link.split("/v/", 1)[1].split("#", 1)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{server.port}/ws") as ws,
    ):
        await ws.send_json({"type": "join", "token": token, "visit": visit})
        answer: dict[str, Any] = await ws.receive_json(timeout=20)
        return answer


async def joins(server: RunningServer, link: str, timeout: float = 20.0) -> dict[str, Any]:
    """The first answer to a join that is not a retryable refusal (the service coming back)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await join_answer(server, link)
        retry = answer.get("type") == "error" and answer.get("fatal") is False
        if not retry or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.25)


async def sigkill(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGKILL)
    assert await server.process.wait() == -signal.SIGKILL


def video_frames(bot: Bot) -> int:
    """Video frames the bot has received so far, from everyone, on every connection."""
    return sum(totals.video_frames for totals in bot._totals().values())


def media_came_back(report: BotReport) -> bool:
    return bool(report.recoveries) and report.recoveries[0]["media_back_seconds"] is not None


async def test_every_booking_joins_after_a_single_node_is_killed_and_restarted(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, "--reconnect-grace", "30")
    restarted: RunningServer | None = None
    try:
        booked = [await server.book() for _ in range(BOOKINGS)]
        # Changes over the API are acknowledged only once recorded, like the booking itself.
        patched, cancelled = booked[0]["visit"], booked[1]["visit"]
        # Later, yet inside the link's opening hours (from 15 minutes before), so it joins.
        later = time.time() + 10 * 60
        status, _ = await api(
            server,
            "PATCH",
            f"/api/visits/{patched}",
            {"planned_start": later, "waiting_room": False},
        )
        assert status == 200
        status, _ = await api(server, "POST", f"/api/visits/{cancelled}/cancel")
        assert status == 200
        status, reissued = await api(server, "POST", f"/api/visits/{booked[2]['visit']}/links")
        assert status == 200
        # A visit in progress, with a waiting room, its bots in the call when the server dies.
        running = await server.create_visit()
        host = dataclasses.replace(light(BOT_SECONDS), admit_all=True)
        bots = [
            Bot(running["links"]["citizen"], light(BOT_SECONDS)),
            Bot(running["links"]["gp"], host),
        ]
        tasks = [asyncio.create_task(bot.run()) for bot in bots]
        await until(seeing_each_other(bots), 30, "media in the running visit")

        await sigkill(server)
        restarted = await start_server(
            tmp_path, "--reconnect-grace", "30", port=server.port, log_name="restarted.log"
        )

        kept = 0
        for entry in booked:
            if entry["visit"] == cancelled:
                continue
            answer = await joins(restarted, entry["links"]["gp"])
            assert answer["type"] == "joined", (entry["visit"], answer)
            kept += 1
        answer = await joins(restarted, reissued["links"]["citizen"])
        assert answer["type"] == "joined", answer
        refused = await joins(restarted, booked[1]["links"]["gp"])
        assert refused["type"] == "error" and refused["code"] == "visit-closed", refused
        status, visit = await api(restarted, "GET", f"/api/visits/{patched}")
        assert status == 200
        assert visit["planned_start"] == pytest.approx(later) and visit["waiting_room"] is False
        status, listed = await api(restarted, "GET", "/api/visits")
        assert status == 200
        assert {v["id"] for v in listed["visits"]} >= {b["visit"] for b in booked}

        await until(media_back(bots), 40, "media back in the running visit")
        reports = await finish(tasks, bots)
        for report in reports:
            assert report.errors == [], report.errors
            assert report.reconnects >= 1 and media_came_back(report), json.dumps(report.to_dict())
        # The citizen came straight back into the call: the waiting room was once, before.
        db = await open_database(None, restarted.data_dir / "metadata.sqlite3")
        try:
            events = await SqlEventLog(db).for_visit(VisitId(running["visit"]))
        finally:
            await db.close()
        waits = [e.role for e in events if e.kind is EventKind.PARTICIPANT_WAITING]
        assert waits == ["citizen"], [(e.kind.value, e.role) for e in events]
        back = max(float(r.recoveries[0]["media_back_seconds"] or 0) for r in reports)
        print(
            f"\nsingle node SIGKILL + restart: {kept} of {BOOKINGS - 1} live bookings joined, the"
            f" cancelled one stayed cancelled; the running visit had media back in {back:.1f} s"
        )
    finally:
        for node in (server, restarted):
            if node is not None:
                await node.stop()


async def test_every_booking_opens_after_redis_is_killed_and_restarted_empty(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    a = await start_node(tmp_path, "df-a", redis_server.url, postgres_url)
    b = await start_node(tmp_path, "df-b", redis_server.url, postgres_url)
    try:
        booked = [await a.book() for _ in range(BOOKINGS)]
        running = await a.create_visit("--no-waiting-room")
        links = running["links"]
        bots = [
            Bot(links["citizen"], light(BOT_SECONDS)),
            Bot(on_node(links["nurse"], b), light(BOT_SECONDS)),
            Bot(links["gp"], light(BOT_SECONDS)),
        ]
        tasks = [asyncio.create_task(bot.run()) for bot in bots]
        await until(seeing_each_other(bots), 30, "media in the running visit")

        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGKILL)
        await redis_server.process.wait()
        await redis_server.start()
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        try:
            # Nothing came back from disk: no booked visit is in Redis (the nodes write back at
            # once only what they host, the running visit, so the whole keyspace is not checked).
            for entry in booked:
                assert not await redis.exists(f"screenvisit:visit:{entry['visit']}")
        finally:
            await redis.aclose()
        frames_at_restart = [video_frames(bot) for bot in bots]

        kept = 0
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        try:
            for n, entry in enumerate(booked):
                node = (a, b)[n % 2]
                answer = await joins(node, on_node(entry["links"]["citizen"], node))
                if answer["type"] == "joined":
                    kept += 1
                    # Rebuilt from the record and placed on a live node again.
                    owner = await redis.get(f"screenvisit:visit:{entry['visit']}:node")
                    assert owner in ("df-a", "df-b"), owner
                else:
                    print(f"\n{entry['visit']} refused after the Redis restart: {answer}")
        finally:
            await redis.aclose()
        print(f"\nRedis SIGKILL + empty restart: {kept} of {BOOKINGS} bookings kept")
        assert kept == BOOKINGS

        async def media_again() -> bool:
            now = [video_frames(bot) for bot in bots]
            return all(n > before + 30 for n, before in zip(now, frames_at_restart, strict=True))

        await until(media_again, 30, "media in the running visit after the Redis restart")
        reports = await finish(tasks, bots)
        for report in reports:
            assert report.errors == [], report.errors
    finally:
        for node in (a, b):
            await node.stop()
