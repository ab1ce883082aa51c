"""A database outage in the middle of a visit: real faults, a real server, real sockets.

PostgreSQL sits behind a TCP proxy this test starts and then cuts (connections reset) or
black-holes (connections accepted, nothing forwarded); SQLite sits on a tiny tmpfs this test
mounts and then fills. Throughout the outage, joins, admission and the host's actions must work
from live state, no reply may wait much longer than one database timeout, and the outcome must
be acknowledged as durable. Once the database is back, every event written meanwhile must be in
it exactly once: the figures (events lost, duplicated, slowest reply) are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from rooms.eventlog import SqlEventLog, VisitEvent
from rooms.ids import VisitId
from rooms.quality_log import OutcomeStore
from rooms.roles import Role, Sector
from rooms.sql import Database, open_database
from server.auth import TokenIssuer
from server.keys import load_or_create_signing_key
from tests.faults.tcpproxy import TcpProxy
from tests.sqlbackends import backend_for
from tests.support.servers import RunningServer, start_server

#: The server's database timeouts in these tests, in seconds (connect and statement).
DB_TIMEOUT = 2.0
#: How long any reply may take during the outage: one database timeout, plus room for a loaded
#: two-core machine. Without timeouts a black-holed PostgreSQL holds a reply for minutes.
REPLY_BOUND = DB_TIMEOUT + 4.0
#: How long the server may take to write its outbox to the database once it is back.
DRAIN_BOUND = 60.0


def server_env(extra: dict[str, str]) -> dict[str, str]:
    return {
        "SCREENVISIT_DATABASE_TIMEOUT": str(DB_TIMEOUT),
        "SCREENVISIT_DATABASE_CONNECT_TIMEOUT": str(DB_TIMEOUT),
        **extra,
    }


class Peer:
    """One participant's signaling socket, with every wait bounded and measured."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, timings: list[float]) -> None:
        self.ws = ws
        self.timings = timings
        self.participant = ""

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def next_of(self, kind: str, since: float | None = None) -> dict[str, Any]:
        """The next message of `kind`, within REPLY_BOUND of `since` (default: now)."""
        start = time.monotonic() if since is None else since
        deadline = start + REPLY_BOUND
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind!r} within {REPLY_BOUND} s"
            try:
                raw = await self.ws.receive(timeout=left)
            except TimeoutError:
                raise AssertionError(f"no {kind!r} within {REPLY_BOUND} s") from None
            assert raw.type is aiohttp.WSMsgType.TEXT, (
                f"waiting for {kind!r}, the socket closed: {raw.type.name} {self.ws.close_code}"
            )
            message: dict[str, Any] = raw.json()
            if message["type"] == "error" and message["code"] not in ("removed",):
                raise AssertionError(f"waiting for {kind!r}: {message}")
            if message["type"] == kind:
                self.timings.append(time.monotonic() - start)
                return message


@contextlib.asynccontextmanager
async def connect(
    http: aiohttp.ClientSession, server: RunningServer, link: str, visit: str, timings: list[float]
) -> AsyncIterator[tuple[Peer, dict[str, Any]]]:
    async with http.ws_connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        peer = Peer(ws, timings)
        start = time.monotonic()
        await peer.send({"type": "join", "token": link.split("#", 1)[1], "visit": visit})
        joined = await peer.next_of("joined", start)
        peer.participant = joined["you"]["participant"]
        yield peer, joined


async def read_report(
    http: aiohttp.ClientSession, server: RunningServer, timings: list[float]
) -> int:
    """GET the evaluation report as an evaluator; the HTTP status, within REPLY_BOUND."""
    key = await asyncio.to_thread(load_or_create_signing_key, server.data_dir / "signing-key.pem")
    token = TokenIssuer("screenvisit-local", "screenvisit", key).sign(
        sub="eval-1", role=Role.EVALUATOR, sector=Sector.REGION, lifetime=300, org="demo"
    )
    start = time.monotonic()
    async with http.get(
        server.base_url + "/api/evaluation/report",
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=REPLY_BOUND),
    ) as response:
        await response.read()
        timings.append(time.monotonic() - start)
        return response.status


async def events_in(db: Database, visit: str) -> list[VisitEvent]:
    return await SqlEventLog(db).for_visit(VisitId(visit))


async def wait_healthy(server: RunningServer) -> float:
    """Seconds until /healthz says ok again (the outbox is empty and the database answers)."""
    start = time.monotonic()
    while (health := await server.health())["status"] != "ok":
        assert time.monotonic() - start < DRAIN_BOUND, f"still {health} after {DRAIN_BOUND} s"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def a_visit_through_an_outage(
    server: RunningServer,
    fault: Callable[[], Awaitable[None]],
    repair: Callable[[], Awaitable[None]],
    open_db: Callable[[], Awaitable[Database]],
    expected_reason: str,
) -> dict[str, float]:
    """Join the host, break the database, run the rest of the visit, repair, count the events."""
    visit = await server.create_visit()
    links, vid = visit["links"], visit["visit"]
    timings: list[float] = []
    async with aiohttp.ClientSession() as http:
        async with connect(http, server, links["gp"], vid, timings) as (gp, _):
            await fault()
            async with connect(http, server, links["citizen"], vid, timings) as (citizen, j):
                assert j["waiting"] is True
                await gp.next_of("waiting")
                await gp.send({"type": "admit", "participant": citizen.participant})
                await citizen.next_of("admitted")
                async with connect(http, server, links["nurse"], vid, timings) as (nurse, j2):
                    assert j2["waiting"] is True
                    await gp.next_of("waiting")
                    await gp.send({"type": "admit-all"})
                    await nurse.next_of("admitted")
                    await gp.send({"type": "fallback-phone"})
                    await citizen.next_of("fallback-phone")
                    await gp.send({"type": "remove", "participant": nurse.participant})
                    removed = await nurse.next_of("error")
                    assert removed["code"] == "removed"
                status = await read_report(http, server, timings)
                assert status in (200, 503), status  # reads have no outbox; never a 500
                health = await server.health()
                assert health["status"] == "degraded", health
                assert expected_reason in health["reasons"], health
                assert any(r.startswith("outbox-pending: ") for r in health["reasons"]), health
                await gp.send({"type": "outcome", "outcome": "admission-avoided", "id": "o-1"})
                ack = await gp.next_of("outcome-recorded")
                assert ack["ref"] == "o-1"
                await gp.send({"type": "end"})
                await gp.next_of("visit-ended")
                await citizen.next_of("visit-ended")

    await repair()
    drained_after = await wait_healthy(server)
    db = await open_db()
    try:
        events = await events_in(db, vid)
        outcome = (await OutcomeStore(db).for_visits([vid])).get(vid)
    finally:
        await db.close()

    ids = {"gp": gp.participant, "citizen": citizen.participant, "nurse": nurse.participant}
    expected: Counter[tuple[str, str | None]] = Counter(
        [
            ("participant-waiting", ids["citizen"]),
            ("participant-admitted", ids["citizen"]),
            ("participant-joined", ids["citizen"]),
            ("visit-started", None),
            ("participant-waiting", ids["nurse"]),
            ("participant-admitted", ids["nurse"]),
            ("participant-joined", ids["nurse"]),
            ("visit-fell-back-to-phone", ids["gp"]),
            ("participant-removed", ids["nurse"]),
            ("participant-left", ids["nurse"]),
            ("outcome-recorded", ids["gp"]),
            ("visit-ended", None),
        ]
    )
    found: Counter[tuple[str, str | None]] = Counter((e.kind.value, e.participant) for e in events)
    lost = sum(max(0, n - found[key]) for key, n in expected.items())
    same = Counter((e.time, e.kind.value, e.participant, repr(e.data)) for e in events)
    duplicated = sum(n - 1 for n in same.values())
    figures = {
        "events_lost": lost,
        "events_duplicated": duplicated,
        "slowest_reply_s": round(max(timings), 3),
        "drained_after_s": round(drained_after, 3),
    }
    print(f"database outage figures: {figures}")
    assert lost == 0, ([k for k in expected if found[k] < expected[k]], figures)
    assert duplicated == 0, figures
    assert {k: found[k] for k in expected} == dict(expected), figures
    assert outcome is not None and outcome[0] == "admission-avoided"
    assert max(timings) < REPLY_BOUND, figures
    log = server.log.read_text()
    assert "Traceback" not in log, log[-4000:]
    return figures


@pytest.mark.parametrize("outage", ["cut", "blackhole"])
async def test_postgresql_behind_a_broken_network(tmp_path: Path, outage: str) -> None:
    async with backend_for("postgresql", tmp_path) as backend:
        assert backend.url is not None
        target = urlsplit(backend.url)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        port = await proxy.start()
        proxied = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{port}"))
        server = await start_server(tmp_path, env=server_env({"SCREENVISIT_DATABASE_URL": proxied}))
        try:

            async def fault() -> None:
                proxy.cut() if outage == "cut" else proxy.blackhole()

            async def repair() -> None:
                proxy.forward()

            await a_visit_through_an_outage(
                server,
                fault,
                repair,
                lambda: open_database(backend.url, tmp_path / "x"),
                "database-unreachable",
            )
        finally:
            await server.stop()
            await proxy.close()


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `folder` (the tests run as root), unmounted afterwards."""
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its filesystem has no space left; return the file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


async def test_sqlite_on_a_full_disk(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"  # on the normal disk: the full one cannot take it
    with tiny_tmpfs(tmp_path / "data", "4m") as data:
        server = await start_server(
            tmp_path, env=server_env({"SCREENVISIT_OUTBOX_DIR": str(outbox)})
        )
        filler: list[Path] = []
        try:

            async def fault() -> None:
                filler.append(await asyncio.to_thread(fill, data))

            async def repair() -> None:
                filler.pop().unlink()

            await a_visit_through_an_outage(
                server,
                fault,
                repair,
                lambda: open_database(None, server.data_dir / "metadata.sqlite3"),
                "database-unreachable",
            )
        finally:
            for path in filler:
                path.unlink()
            await server.stop()


async def test_a_killed_server_replays_its_outbox_at_start_up(tmp_path: Path) -> None:
    async with backend_for("postgresql", tmp_path) as backend:
        assert backend.url is not None
        target = urlsplit(backend.url)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        port = await proxy.start()
        proxied = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{port}"))
        env = server_env({"SCREENVISIT_DATABASE_URL": proxied})
        server = await start_server(tmp_path, env=env)
        again: RunningServer | None = None
        try:
            visit = await server.create_visit("--no-waiting-room")
            proxy.cut()
            timings: list[float] = []
            async with (
                aiohttp.ClientSession() as http,
                connect(http, server, visit["links"]["gp"], visit["visit"], timings) as (gp, _),
            ):
                await gp.send({"type": "outcome", "outcome": "other", "id": "o-1"})
                await gp.next_of("outcome-recorded")
                pending = (await server.health())["reasons"]
                assert any(r.startswith("outbox-pending: ") for r in pending), pending
                # Killed with its records only in the outbox, acknowledged.
                server.process.send_signal(signal.SIGKILL)
                await server.process.wait()
            proxy.forward()
            again = await start_server(tmp_path, env=env, log_name="again.log")
            # Replayed before the server said it was listening.
            db = await open_database(backend.url, tmp_path / "x")
            try:
                events = await events_in(db, visit["visit"])
                outcome = (await OutcomeStore(db).for_visits([visit["visit"]])).get(visit["visit"])
            finally:
                await db.close()
            joined = [e for e in events if e.kind.value == "participant-joined"]
            recorded = [e for e in events if e.kind.value == "outcome-recorded"]
            assert [e.participant for e in joined] == [gp.participant]
            assert [e.data for e in recorded] == [{"outcome": "other"}]
            assert outcome is not None and outcome[0] == "other"
            assert (await again.health())["status"] == "ok"
        finally:
            if again is not None:
                await again.stop()
            await server.stop()
            await proxy.close()


async def test_health_tells_of_an_unreachable_database_before_anything_is_written(
    tmp_path: Path,
) -> None:
    async with backend_for("postgresql", tmp_path) as backend:
        assert backend.url is not None
        target = urlsplit(backend.url)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        port = await proxy.start()
        proxied = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{port}"))
        server = await start_server(tmp_path, env=server_env({"SCREENVISIT_DATABASE_URL": proxied}))
        try:
            proxy.blackhole()
            # The writer probes the database every few seconds (5) within its timeout.
            deadline = time.monotonic() + 5 + DB_TIMEOUT + 10
            while (health := await server.health())["status"] != "degraded":
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.2)
            assert health["reasons"] == ["database-unreachable"]
            proxy.forward()
            await wait_healthy(server)
        finally:
            await server.stop()
            await proxy.close()
