"""The evaluation report's period is applied in SQL (both backends), and a big report is built in
a worker process, so the server's event loop keeps turning while it runs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

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
