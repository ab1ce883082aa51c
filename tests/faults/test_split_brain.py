"""A node paused longer than its registration lives (SIGSTOP, then SIGCONT) wakes without the
lease of its visit: another node took the visit over meanwhile, and only that node serves it.

Two real nodes share a redis-server this test starts on a free port, and PostgreSQL. Their
registrations live NODE_TTL seconds (4, the default is 6), so the pause is scaled to it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from redis.asyncio import Redis

from rooms.sql import open_database
from tests.support.bots import finish, flowing, media_back, seeing_each_other, start_bots
from tests.support.cluster import (
    NODE_TTL,
    PrivateRedis,
    events_of,
    on_node,
    postgres_url,
    redis_server,
    start_node,
)
from tests.support.servers import RunningServer
from tests.support.waiting import until

__all__ = ["postgres_url", "redis_server"]

#: Far longer than a node's registration lives: the other node takes the visit over, and the
#: paused one stays stopped a while after that.
PAUSE_SECONDS = 3 * NODE_TTL
#: The longest a bot runs; the test ends the runs once it has seen what it waits for.
BOT_SECONDS = 90.0


async def _serves(node: RunningServer, participants: int) -> bool:
    health = await node.health()
    return bool(
        health["visits"] == (1 if participants else 0) and health["participants"] == participants
    )


async def test_a_node_that_wakes_without_its_lease_drops_the_visit_and_only_the_owner_serves_it(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    a = await start_node(tmp_path, "sb-a", redis_server.url, postgres_url)
    b = await start_node(tmp_path, "sb-b", redis_server.url, postgres_url)
    db = await open_database(postgres_url, tmp_path / "unused.sqlite3")
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        booked = await a.create_visit("--no-waiting-room")
        visit, links = booked["visit"], booked["links"]
        assert await redis.get(f"screenvisit:visit:{visit}:node") == "sb-a"
        # The citizen and the nurse reach the visit through node B, the GP straight on A.
        bots, tasks = start_bots(
            [on_node(links["citizen"], b), on_node(links["nurse"], b), links["gp"]], BOT_SECONDS
        )
        await until(seeing_each_other(bots), 40, "media through node A")
        assert await _serves(a, 3)
        a.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # B finds A's registration gone and takes the visit over when its participants
            # reconnect there.
            await until(lambda: _owned_by(redis, visit, "sb-b"), 30, "node B to take the visit")
            await asyncio.sleep(max(0.0, PAUSE_SECONDS - (time.monotonic() - stopped)))
        finally:
            a.process.send_signal(signal.SIGCONT)
            woke = time.monotonic()
        # A wakes holding an old lease: it drops the visit (hub and sockets) and serves
        # nobody in it; the GP, whose socket was on A, is relayed to B like everyone else.
        await until(lambda: _serves(a, 0), 20, "node A to drop the visit it lost")
        dropped = time.monotonic() - woke
        await until(lambda: _serves(b, 3), 40, "node B to serve all three participants")
        assert await redis.get(f"screenvisit:visit:{visit}:node") == "sb-b"
        before = [bot.video_frames() for bot in bots]
        await until(flowing(bots, before), 40, "media on node B after A woke")
        print(
            f"\nSIGSTOP {woke - stopped:.0f} s: the woken node had dropped the visit"
            f" {dropped:.1f} s after SIGCONT; all three on node B with media"
            f" {time.monotonic() - woke:.1f} s after"
        )
        assert await _serves(a, 0)  # and A did not take anyone back meanwhile
        await until(media_back(bots), 20, "media back after every loss")
        reports = await finish(tasks, bots)
        for report in reports:
            assert report.errors == [], report.errors
            assert report.reconnects >= 1
            assert report.recoveries[-1]["media_back_seconds"] is not None, report.to_dict()
        events = await events_of(db, visit)
        kinds = [kind for kind, _p, _d in events]
        assert "visit-moved" in kinds
        # Presence and the record are fenced too: the woken node took nobody out of the call
        # and wrote no departure into the record; who is in the call is B's view.
        everyone = {report.participant for report in reports}
        assert await redis.smembers(f"screenvisit:visit:{visit}:in-call") == everyone
        moved = kinds.index("visit-moved")
        left = [(k, p) for k, p, _d in events[moved:] if k == "participant-left"]
        assert left == [], events[moved:]
        log = a.log.read_text()
        assert "lost the lease of visit" in log
        assert "Traceback" not in log
    finally:
        await redis.aclose()
        await db.close()
        for node in (a, b):
            await node.stop()


async def _owned_by(redis: Redis, visit: str, node: str) -> bool:
    return bool(await redis.get(f"screenvisit:visit:{visit}:node") == node)
