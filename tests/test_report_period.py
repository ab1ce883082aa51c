"""The evaluation report's period is applied in SQL (both backends), and a big report is built in
a worker process, so the server's event loop keeps turning while it runs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.evaluation_report import ORG, fill
from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.sql import Database
from server.app import create_app
from server.config import Settings
from server.reports import Filters, ReportWorkers, Source, gather
from tests.sqlbackends import backend, database  # noqa: F401
from tests.support.identity import make_identities
from tests.support.servers import start_server

Client = TestClient[web.Request, web.Application]
DAY = 86400.0
T0 = 1_780_000_000.0  # the period under test is [T0, T0 + 7 days)
SINCE, UNTIL = T0, T0 + 7 * DAY


def event(visit: str, kind: EventKind, t: float, org: str = ORG, **data: object) -> VisitEvent:
    return VisitEvent(
        visit=VisitId(visit),
        kind=kind,
        participant=ParticipantId(f"{visit}-p") if kind is EventKind.PARTICIPANT_JOINED else None,
        role="gp",
        sector="general-practice",
        org=org,
        data=dict(data),
        time=t,
    )


async def record(db: Database) -> None:
    """Visits in and out of the period, each kept or dropped by its reference time (started,
    else planned, else created)."""
    log = SqlEventLog(db)
    cases: list[tuple[str, list[tuple[EventKind, float, dict[str, Any]]]]] = [
        ("in-created", [(EventKind.VISIT_CREATED, T0 + DAY, {})]),
        ("before", [(EventKind.VISIT_CREATED, T0 - DAY, {})]),
        ("after", [(EventKind.VISIT_CREATED, UNTIL + 1, {})]),
        ("at-until", [(EventKind.VISIT_CREATED, UNTIL, {})]),
        # Booked before the period, held in it: counted.
        (
            "booked-before-held-in",
            [
                (EventKind.VISIT_CREATED, T0 - 3 * DAY, {}),
                (EventKind.PARTICIPANT_JOINED, T0 + 2 * DAY, {}),
            ],
        ),
        # Booked in the period, held after it: not counted.
        (
            "booked-in-held-after",
            [
                (EventKind.VISIT_CREATED, T0 + DAY, {}),
                (EventKind.PARTICIPANT_JOINED, UNTIL + DAY, {}),
            ],
        ),
        # Booked before, planned in the period, never held: counted.
        ("planned-in", [(EventKind.VISIT_CREATED, T0 - DAY, {"planned_start": T0 + DAY})]),
        # Booked in the period, planned after it, never held: not counted.
        ("planned-after", [(EventKind.VISIT_CREATED, T0 + DAY, {"planned_start": UNTIL + DAY})]),
    ]
    for visit, steps in cases:
        for kind, t, data in steps:
            await log.append(event(visit, kind, t, **data))
    await log.append(event("other-org", EventKind.VISIT_CREATED, T0 + DAY, org="another"))


EXPECTED = {"in-created", "booked-before-held-in", "planned-in"}


async def test_the_period_is_applied_in_sql(database: Database) -> None:  # noqa: F811
    await record(database)
    candidates = set(await SqlEventLog(database).visits_in_period(ORG, SINCE, UNTIL))
    # SQL reads no visit outside the period, and misses none inside it.
    assert candidates == EXPECTED
    summaries = await gather(database, SqlEventLog(database), ORG, Filters(SINCE, UNTIL))
    assert {s.visit for s in summaries} == EXPECTED
    everything = await gather(database, SqlEventLog(database), ORG, Filters())
    assert len(everything) == 8


async def test_report_workers_count_only_the_period(tmp_path: Path) -> None:
    """The worker process opens the database itself and applies the same period."""
    path = tmp_path / "events.sqlite3"
    await asyncio.to_thread(fill, path, 40, 20, time.time())
    workers = ReportWorkers(Source(None, path))
    try:
        week, _ = await workers.report(ORG, Filters(since=time.time() - 7 * DAY))
        whole, report = await workers.report(ORG, Filters())
    finally:
        await workers.close()
    assert whole == 40
    assert 0 < week < 40
    assert report.to_dict()


async def _loop_gaps(during: asyncio.Task[Any]) -> list[float]:
    """How long the loop went between ticks of a 5 ms probe while `during` ran."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    while not during.done():
        asked = loop.time()
        await asyncio.sleep(0.005)
        gaps.append(loop.time() - asked)
    return gaps


async def test_the_loop_keeps_turning_while_a_big_report_runs(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    """Before: the report summarized every visit on the loop in one piece, so the probe's
    longest gap was most of the report's time. Now the loop only waits for a worker process."""
    identities = make_identities(tmp_path / "idp")
    configured = replace(settings, trust_file=identities.trust_file)
    client: Client = await aiohttp_client(create_app(configured))
    await asyncio.to_thread(fill, configured.database_path, 1500, 30, time.time(), "region-nord")
    headers = {"Authorization": f"Bearer {identities.evaluator()}"}

    async def get_report() -> dict[str, Any]:
        response = await client.get("/api/evaluation/report", headers=headers)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    began = time.perf_counter()
    task = asyncio.create_task(get_report())
    gaps = await _loop_gaps(task)
    took = time.perf_counter() - began
    body = await task
    assert body["visits"] == 1500
    # The loop ticked all along: no gap comes near the report's own time.
    assert len(gaps) >= 10
    assert max(gaps) < took / 3, (max(gaps), took)


async def test_a_real_server_builds_reports_and_exports_in_its_worker(tmp_path: Path) -> None:
    """`screenvisit serve` (started as `python -m`): the worker process is spawned from it and
    reads the server's own database."""
    identities = make_identities(tmp_path / "idp")
    server = await start_server(
        tmp_path, env={"SCREENVISIT_TRUST_FILE": str(identities.trust_file)}
    )
    try:
        path = Settings(data_dir=server.data_dir).database_path
        await asyncio.to_thread(fill, path, 30, 10, time.time(), "region-nord")
        headers = {"Authorization": f"Bearer {identities.evaluator()}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            url = server.base_url + "/api/evaluation/report"
            async with http.get(url, params={"from": "2000-01-01"}) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["visits"] == 30
            # The worker did not import the server's main module (server.cli) again: that
            # would bring in the whole media stack (aiortc, PyAV's libav*), a second of CPU
            # before its first report. The server itself has them loaded.
            server_process = psutil.Process(server.process.pid)
            (worker,) = _report_workers(server_process)
            assert _media_libraries(server_process)
            assert not _media_libraries(worker), _media_libraries(worker)
            url = server.base_url + "/api/evaluation/export"
            async with http.get(url, params={"format": "csv"}) as response:
                assert response.status == 200, await response.text()
                assert len((await response.text()).splitlines()) == 31
    finally:
        assert await server.stop() == 0
    assert "Traceback" not in server.log.read_text()


def _media_libraries(process: psutil.Process) -> set[str]:
    """The media stack's files that `process` has mapped."""
    return {
        Path(m.path).name
        for m in process.memory_maps()
        if "/aiortc/" in m.path or "/av/" in m.path or "libavcodec" in m.path
    }


def _report_workers(process: psutil.Process) -> list[psutil.Process]:
    """The spawned worker processes among `process`'s children (not the resource tracker)."""
    found = []
    for child in process.children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


async def test_a_killed_report_worker_is_a_503_and_the_next_report_works(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    """The worker process is SIGKILLed (as the OOM killer would) while it builds a report: that
    request gets a precise 503, not a 500, and the next one gets a new worker."""
    identities = make_identities(tmp_path / "idp")
    configured = replace(settings, trust_file=identities.trust_file)
    client: Client = await aiohttp_client(create_app(configured))
    await asyncio.to_thread(fill, configured.database_path, 3000, 30, time.time(), "region-nord")
    headers = {"Authorization": f"Bearer {identities.evaluator()}"}
    me = psutil.Process()
    request = asyncio.create_task(client.get("/api/evaluation/report", headers=headers))
    deadline = time.monotonic() + 60
    while not (workers := _report_workers(me)) and not request.done():
        assert time.monotonic() < deadline, "no worker process started"
        await asyncio.sleep(0.01)
    for worker in workers:
        worker.kill()
    response = await request
    assert response.status == 503, await response.text()
    assert (await response.json())["error"]["code"] == "report-unavailable"
    response = await client.get("/api/evaluation/report", headers=headers)
    assert response.status == 200
    assert (await response.json())["visits"] == 3000
