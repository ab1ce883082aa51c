"""Recorded metadata survives a crash: SIGKILL right after the outcome was acknowledged."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from rooms.eventlog import SqlEventLog
from rooms.ids import VisitId
from rooms.quality_log import OutcomeStore
from rooms.sql import open_database
from tests.support.servers import start_server


async def test_an_acknowledged_outcome_survives_sigkill(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    visit = await server.create_visit("--no-waiting-room")
    token = visit["links"]["gp"].split("#", 1)[1]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{server.port}/ws") as ws,
    ):
        await ws.send_json({"type": "join", "token": token, "visit": visit["visit"]})
        assert (await ws.receive_json(timeout=10))["type"] == "joined"
        await ws.send_json(
            {"type": "outcome", "outcome": "admission-avoided", "note": "kun til lægen"}
        )
        while (message := await ws.receive_json(timeout=10))["type"] != "outcome-recorded":
            pass
        assert message["outcome"] == "admission-avoided"
        # No goodbye, no flush: the process dies the instant the outcome was acknowledged.
        server.process.send_signal(signal.SIGKILL)
        assert await server.process.wait() == -signal.SIGKILL

    db = await open_database(None, server.data_dir / "metadata.sqlite3")
    try:
        events = await SqlEventLog(db).for_visit(VisitId(visit["visit"]))
        kinds = [e.kind.value for e in events]
        assert kinds[:1] == ["visit-created"]
        assert {"participant-invited", "participant-joined", "outcome-recorded"} <= set(kinds)
        outcomes = await OutcomeStore(db).for_visits([visit["visit"]])
        assert outcomes[visit["visit"]][0] == "admission-avoided"
    finally:
        await db.close()

    # And the server comes back on the same data folder.
    again = await start_server(tmp_path)
    assert (await again.health())["status"] == "ok"
    await again.stop()
