"""Several server processes sharing one real Redis (and PostgreSQL): relay, node failure, Redis
restart, drain, revocation and rate limits across nodes, and `serve --workers`.

Each test starts its own redis-server on a free port, so it can stop and restart it without
touching the machine's shared Redis, and the nodes it starts see no other test's nodes. The
nodes' registrations live NODE_TTL seconds (tests.support.cluster); the bots' runs end once the
test has seen what it waits for (tests.support.bots.finish).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from redis.asyncio import Redis

from rooms.sql import open_database
from signaling.bot import BotReport
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
from tests.support.servers import RunningServer, cli, start_server
from tests.support.waiting import until

__all__ = ["postgres_url", "redis_server"]

#: Longer than a node's registration lives, so a node that judged by Redis alone would think
#: the others dead.
OUTAGE_SECONDS = NODE_TTL + 1.0
#: The longest a bot runs; the tests end the runs once they have seen what they wait for.
BOT_SECONDS = 90.0


def remote_video(report: BotReport) -> dict[str, int]:
    return {r["role"]: r["video_frames"] for r in report.remotes}


async def test_a_visit_on_one_node_serves_participants_on_others_and_survives_its_loss(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    a = await start_node(tmp_path, "mn-a", redis_server.url, postgres_url)
    b = await start_node(tmp_path, "mn-b", redis_server.url, postgres_url)
    c = await start_node(tmp_path, "mn-c", redis_server.url, postgres_url)
    db = await open_database(postgres_url, tmp_path / "unused.sqlite3")
    try:
        booked = await a.create_visit("--no-waiting-room")
        visit, links = booked["visit"], booked["links"]
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        assert await redis.get(f"screenvisit:visit:{visit}:node") == "mn-a"  # least loaded, by id
        started = time.monotonic()
        bots, tasks = start_bots(
            [on_node(links["citizen"], b), on_node(links["nurse"], c), on_node(links["gp"], b)],
            BOT_SECONDS,
        )
        await until(seeing_each_other(bots), 30, "media through node A")
        a.process.kill()
        killed = time.monotonic()
        await a.process.wait()
        # The visit moves to a live node, and everyone gets media back there.
        await until(lambda: _moved(redis, visit), 20, "the visit to be pinned to a live node")
        await until(media_back(bots), 30, "media back for every bot")
        reports = await finish(tasks, bots)
        await redis.aclose()
        for report in reports:
            assert report.errors == [], report.errors
            assert report.reconnects >= 1
            recovery = report.recoveries[0]
            assert recovery["media_back_seconds"] is not None, json.dumps(report.to_dict())
        # Recovery, measured from the kill: when each bot had media from everyone again.
        recovered = [
            started
            + float(r.recoveries[0]["lost_at"] or 0)
            + float(r.recoveries[0]["media_back_seconds"] or 0)
            for r in reports
        ]
        worst = max(recovered) - killed
        print(f"\nnode failure: media back for every bot {worst:.1f} s after SIGKILL of node A")
        assert worst < 15
        kinds = [kind for kind, _p, _d in await events_of(db, visit)]
        assert "visit-moved" in kinds
        assert kinds.count("participant-reconnected") >= 3
    finally:
        await db.close()
        for node in (b, c):
            await node.stop()


async def _moved(redis: Redis, visit: str) -> bool:
    return await redis.get(f"screenvisit:visit:{visit}:node") in ("mn-b", "mn-c")


async def join_once(node: RunningServer, link: str) -> dict[str, Any]:
    """Open a signaling socket on `node`, send `join`, return the first answer."""
    visit, token = link.split("/v/", 1)[1].split("#", 1)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{node.port}/ws") as ws,
    ):
        await ws.send_json({"type": "join", "token": token, "visit": visit})
        answer: dict[str, Any] = await ws.receive_json(timeout=15)
        return answer


async def test_a_redis_restart_mid_visit_does_not_stop_the_call(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    a = await start_node(tmp_path, "mn-a", redis_server.url, postgres_url)
    b = await start_node(tmp_path, "mn-b", redis_server.url, postgres_url)
    try:
        booked = await a.create_visit("--no-waiting-room", "--relative")
        visit, links = booked["visit"], booked["links"]
        started = time.monotonic()
        bots, tasks = start_bots(
            [links["citizen"], on_node(links["nurse"], b), links["gp"]], BOT_SECONDS
        )
        await until(seeing_each_other(bots), 30, "media in the visit")
        await redis_server.stop()
        outage = time.monotonic()
        # While Redis is down a new participant is refused with a clear, retryable error...
        refused = await join_once(b, links["relative"])
        assert refused["type"] == "error" and refused["code"] == "service-unavailable"
        assert refused["fatal"] is False
        # The outage's length is what is tested: longer than a node's registration lives.
        await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - outage))
        await redis_server.start()
        back = time.monotonic()
        # ...and once it is back the nodes re-register and write back the visit they host.
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await until(lambda: _resynced(redis, visit), 15, "the nodes to re-register and re-sync")
        finally:
            await redis.aclose()
        # The call goes on after the outage too: more video for everyone, then the runs end.
        resynced = [bot.video_frames() for bot in bots]
        await until(flowing(bots, resynced), 15, "media after the nodes re-synced")
        reports = await finish(tasks, bots)
        for report in reports:
            assert report.errors == [], report.errors
            assert report.reconnects == 0, report.recoveries  # the call never dropped
            for remote in report.remotes:
                # Full rate over the whole run, outage included (30 fps sent).
                assert remote["video_fps"] > 25, (report.role, remote)
        print(
            f"\nRedis outage of {back - outage:.1f} s, {outage - started:.1f} s into the call:"
            f" no bot reconnected; video fps {[r['video_fps'] for x in reports for r in x.remotes]}"
        )
    finally:
        for node in (a, b):
            await node.stop()


async def _resynced(redis: Redis, visit: str) -> bool:
    nodes = {await redis.get("screenvisit:node:mn-a"), await redis.get("screenvisit:node:mn-b")}
    return (
        None not in nodes
        and await redis.get(f"screenvisit:visit:{visit}:node") == "mn-a"
        and await redis.exists(f"screenvisit:visit:{visit}") == 1
        and await redis.scard(f"screenvisit:visit:{visit}:in-call") == 3
    )


async def test_a_drained_node_hands_its_visit_on_and_exits(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    a = await start_node(tmp_path, "mn-a", redis_server.url, postgres_url)
    b = await start_node(tmp_path, "mn-b", redis_server.url, postgres_url)
    db = await open_database(postgres_url, tmp_path / "unused.sqlite3")
    try:
        booked = await a.create_visit("--no-waiting-room")
        visit, links = booked["visit"], booked["links"]
        bots, tasks = start_bots(
            [on_node(links[r], b) for r in ("citizen", "nurse", "gp")], BOT_SECONDS
        )
        await until(seeing_each_other(bots), 40, "media through node A")
        code, out, _err = await cli(a, "drain")
        assert code == 0 and "mn-a is draining" in out
        # A new visit goes to the node that is not draining (the drain is registered before the
        # API answers). Booked through B: A may be gone by now, its drain timeout is 3 s...
        later = await b.create_visit("--no-waiting-room")
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert await redis.get(f"screenvisit:visit:{later['visit']}:node") == "mn-b"
        finally:
            await redis.aclose()
        # ...and after the drain timeout (3 s) node A hands the running one on and exits.
        assert await asyncio.wait_for(a.process.wait(), 30) == 0
        await until(media_back(bots), 40, "media back for every bot on node B")
        reports = await finish(tasks, bots)
        for report in reports:
            assert report.errors == [], report.errors
            assert report.reconnects >= 1
            assert report.recoveries[0]["media_back_seconds"] is not None, report.to_dict()
        kinds = [kind for kind, _p, _d in await events_of(db, visit)]
        assert "visit-moved" in kinds
    finally:
        await db.close()
        for node in (a, b):
            await node.stop()


async def test_revocation_rate_limits_and_the_audit_log_hold_across_nodes(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    a = await start_node(
        tmp_path,
        "mn-a",
        redis_server.url,
        postgres_url,
        SCREENVISIT_AUTH_FAILURES_PER_MINUTE="3",
    )
    b = await start_node(
        tmp_path,
        "mn-b",
        redis_server.url,
        postgres_url,
        SCREENVISIT_AUTH_FAILURES_PER_MINUTE="3",
    )
    db = await open_database(postgres_url, tmp_path / "unused.sqlite3")
    try:
        booked = await a.create_visit("--no-waiting-room")
        visit, links = booked["visit"], booked["links"]
        bots, (citizen, gp) = start_bots([on_node(links["citizen"], b), links["gp"]], BOT_SECONDS)
        await until(seeing_each_other(bots), 30, "media in the visit")
        # Revoked on node A; the citizen's session (relayed from B) is closed at once...
        token = links["citizen"].split("#", 1)[1]
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        code, _out, err = await cli(a, "token", "revoke", "--", jti)
        assert code == 0, err
        report = await citizen
        assert [e["code"] for e in report.errors] == ["token-revoked"]
        # ...and node B refuses the token too.
        refused = await join_once(b, on_node(links["citizen"], b))
        assert refused["code"] == "token-revoked"
        await finish([gp], bots[1:])
        # Failed authentications count across nodes, 3 a minute from one address: the revoked
        # token on B was the first, then one on A and one on B, and both refuse the next.
        bad = on_node(links["nurse"], a).split("#")[0] + "#not-a-token"
        codes = [(await join_once(node, bad))["code"] for node in (a, b, a, b)]
        assert codes == ["token-malformed"] * 2 + ["rate-limited"] * 2
        # Both nodes wrote the same audit log.
        rows = await db.fetch("SELECT reason FROM audit WHERE visit = ?", visit)
        reasons = [r[0] for r in rows]
        assert reasons.count("token-revoked") >= 1
    finally:
        await db.close()
        for node in (a, b):
            await node.stop()


async def test_serve_workers_share_one_port_and_place_visits_across_them(
    tmp_path: Path, redis_server: PrivateRedis, postgres_url: str
) -> None:
    server = await start_server(
        tmp_path,
        "--workers",
        "2",
        env={
            "SCREENVISIT_REDIS_URL": redis_server.url,
            "SCREENVISIT_NODE_ID": "mw",
            "SCREENVISIT_DRAIN_TIMEOUT": "2",
        },
    )
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await until(lambda: _workers_up(redis), 30, "both workers to register")
        # A burst of bookings (nobody has joined yet, so every heartbeat says load 0) is spread
        # by the visits each worker hosts: 2 and 2.
        booked = await asyncio.gather(*(server.create_visit("--no-waiting-room") for _ in range(4)))
        owners = [str(await redis.get(f"screenvisit:visit:{v['visit']}:node")) for v in booked]
        assert sorted(owners) == ["mw-w0", "mw-w0", "mw-w1", "mw-w1"]
        first = booked[0]
        bots, tasks = start_bots(
            [first["links"][r] for r in ("citizen", "nurse", "gp")], BOT_SECONDS
        )

        async def thirty_frames_each() -> bool:
            counts = [bot.video_frames() for bot in bots]
            return all(len(c) == 2 and min(c.values()) > 30 for c in counts)

        await until(thirty_frames_each, 40, "over 30 video frames from each other bot")
        reports = await finish(tasks, bots)
        for report in reports:
            assert report.errors == []
            assert len(report.remotes) == 2 and min(remote_video(report).values()) > 30
    finally:
        await redis.aclose()
        assert await server.stop() == 0


async def _workers_up(redis: Redis) -> bool:
    return await redis.exists("screenvisit:node:mw-w0", "screenvisit:node:mw-w1") == 2
