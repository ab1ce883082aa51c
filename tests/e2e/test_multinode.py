"""Several server processes sharing one real Redis (and PostgreSQL): relay, node failure, Redis
restart, drain, revocation and rate limits across nodes, and `serve --workers`.

Each test starts its own redis-server on a free port, so it can stop and restart it without
touching the machine's shared Redis, and the nodes it starts see no other test's nodes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rooms.sql import Database, open_database
from signaling.bot import Bot, BotOptions, BotReport, run_bot
from tests.sqlbackends import backend_for
from tests.support.servers import RunningServer, cli, free_port, start_server


@dataclass
class PrivateRedis:
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            stdout=asyncio.subprocess.DEVNULL,
        )
        client = Redis(port=self.port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await client.ping()
                    return
                except (OSError, RedisError):
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 10)


@pytest.fixture
async def redis_server() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    async with backend_for("postgresql", tmp_path) as location:
        assert location.url is not None
        yield location.url


async def start_node(
    tmp: Path, name: str, redis_url: str, database_url: str, **env: str
) -> RunningServer:
    """A node of the deployment; every node shares the data folder (the signing key)."""
    return await start_server(
        tmp,
        log_name=f"{name}.log",
        env={
            "SCREENVISIT_REDIS_URL": redis_url,
            "SCREENVISIT_DATABASE_URL": database_url,
            "SCREENVISIT_NODE_ID": name,
            "SCREENVISIT_DRAIN_TIMEOUT": "3",
            **env,
        },
    )


def on_node(link: str, node: RunningServer) -> str:
    """The same invite link, opened through another node (as a load balancer would send it)."""
    scheme, rest = link.split("://", 1)
    return f"{scheme}://127.0.0.1:{node.port}/{rest.split('/', 1)[1]}"


#: Longer than a node's registration lives (6 s), so a node that judged by Redis alone would
#: think the others dead.
OUTAGE_SECONDS = 7.0


def light(seconds: float) -> BotOptions:
    return BotOptions(seconds=seconds, width=320, height=240, decode=False)


async def events_of(db: Database, visit: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT kind, participant, data FROM events WHERE visit = ? ORDER BY id", visit
    )
    return [(str(r[0]), r[1], json.loads(r[2]) if r[2] else {}) for r in rows]


async def until(condition: Any, timeout: float, what: str) -> None:
    """Poll an outside condition (another process's state) until it holds, or fail."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def start_bots(links: list[str], seconds: float) -> tuple[list[Bot], list[asyncio.Task[BotReport]]]:
    """Light bots on `links`, running: the bots (to watch) and their tasks (for the reports)."""
    bots = [Bot(link, light(seconds)) for link in links]
    return bots, [asyncio.create_task(bot.run()) for bot in bots]


def seeing_each_other(bots: list[Bot]) -> Callable[[], Awaitable[bool]]:
    """Every bot has received video from every other one (as the participants would see it)."""

    async def condition() -> bool:
        return all(len(bot.video_from()) >= len(bots) - 1 for bot in bots)

    return condition


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
            [on_node(links["citizen"], b), on_node(links["nurse"], c), on_node(links["gp"], b)], 40
        )
        await until(seeing_each_other(bots), 30, "media through node A")
        a.process.kill()
        killed = time.monotonic()
        await a.process.wait()
        # The visit moves to a live node, and everyone gets media back there.
        await until(lambda: _moved(redis, visit), 20, "the visit to be pinned to a live node")
        reports = await asyncio.gather(*tasks)
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
        bots, tasks = start_bots([links["citizen"], on_node(links["nurse"], b), links["gp"]], 30)
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
        reports = await asyncio.gather(*tasks)
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
        bots, tasks = start_bots([on_node(links[r], b) for r in ("citizen", "nurse", "gp")], 45)
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
        reports = await asyncio.gather(*tasks)
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
        bots, (citizen, gp) = start_bots([on_node(links["citizen"], b), links["gp"]], 20)
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
        await gp
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
        reports = await asyncio.gather(
            *(run_bot(first["links"][r], light(8)) for r in ("citizen", "nurse", "gp"))
        )
        for report in reports:
            assert report.errors == []
            assert len(report.remotes) == 2 and min(remote_video(report).values()) > 30
    finally:
        await redis.aclose()
        assert await server.stop() == 0


async def _workers_up(redis: Redis) -> bool:
    return await redis.exists("screenvisit:node:mw-w0", "screenvisit:node:mw-w1") == 2
