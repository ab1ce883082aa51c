"""A scripted visit through the real server, then what evaluators get from it: the aggregated
report and exports, with no personal data."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from tests.sqlbackends import backend_for
from tests.support.identity import Identities, make_identities
from tests.test_waiting_room import join, next_of

Client = TestClient[web.Request, web.Application]
NAME = "Inger Hansen"
NOTE = "ondt i brystet"


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return make_identities(tmp_path / "idp")


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(
    request: pytest.FixtureRequest,
    aiohttp_client: Any,
    settings: Settings,
    identities: Identities,
    tmp_path: Path,
) -> AsyncIterator[Client]:
    """The same scripted visit and report on the embedded SQLite and on a real PostgreSQL."""
    async with backend_for(request.param, tmp_path / "db") as backend:
        configured = replace(
            settings, trust_file=identities.trust_file, database_url=backend.url or ""
        )
        made: Client = await aiohttp_client(create_app(configured))
        yield made
        await made.close()


async def scripted_visit(client: Client, identities: Identities) -> dict[str, Any]:
    """An assisted visit: the nurse hosts, the citizen waits and is let in, the GP joins; the
    nurse records the outcome with a private note; the citizen answers the survey."""
    response = await client.post(
        "/api/visits",
        json={
            "kind": "assisted",
            "participants": [
                {"role": "citizen", "name": NAME},
                {"role": "nurse"},
                {"role": "gp"},
                {"role": "relative"},
            ],
        },
        headers={"Authorization": f"Bearer {identities.gp()}"},
    )
    assert response.status == 201
    visit: dict[str, Any] = await response.json()
    token = {role: link.split("#", 1)[1] for role, link in visit["links"].items()}
    nurse, _ = await join(client, token["nurse"], visit["visit"])
    await nurse.send_json({"type": "assisting", "on": True})
    citizen, _ = await join(client, token["citizen"], visit["visit"])
    waiting = await next_of(nurse, "waiting")
    await nurse.send_json({"type": "admit", "participant": waiting["participant"]["participant"]})
    await next_of(citizen, "admitted")
    gp, _ = await join(client, token["gp"], visit["visit"])
    await nurse.send_json({"type": "outcome", "outcome": "admission-avoided", "note": NOTE})
    await next_of(nurse, "outcome-recorded")
    await nurse.send_json({"type": "end"})
    for ws in (nurse, citizen, gp):
        await next_of(ws, "visit-ended")
    response = await client.post(
        f"/api/visits/{visit['visit']}/survey",
        json={"q1": 5, "q2": 4, "q3": 3},
        headers={"Authorization": f"Bearer {token['citizen']}"},
    )
    assert response.status == 201
    return visit


async def test_evaluators_see_the_visit_aggregated_and_pseudonymous(
    client: Client, identities: Identities
) -> None:
    visit = await scripted_visit(client, identities)
    evaluator = {"Authorization": f"Bearer {identities.evaluator(org='praksis-7')}"}
    response = await client.get("/api/evaluation/report", headers=evaluator)
    assert response.status == 200, await response.text()
    data = await response.json()
    report = data["report"]
    assert data["visits"] == 1
    assert report["outcomes"] == {"admission-avoided": 1}
    assert report["assisted"] == 1
    assert report["no_shows"] == {"relative": 1}
    assert report["technical_failures"] == 0
    assert report["experience"]["mean"] == 4.0

    exports = {}
    for fmt in ("csv", "participants-csv", "json", "fhir"):
        response = await client.get(
            "/api/evaluation/export", params={"format": fmt}, headers=evaluator
        )
        assert response.status == 200, fmt
        exports[fmt] = await response.text()
    rows = list(csv.DictReader(io.StringIO(exports["csv"])))
    assert len(rows) == 1 and rows[0]["outcome"] == "admission-avoided"
    bundle = json.loads(exports["fhir"])
    kinds = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds == ["Encounter", "QuestionnaireResponse"]
    forbidden = [
        NAME,
        NOTE,
        visit["visit"],
        *[link.split("#", 1)[1] for link in visit["links"].values()],
    ]
    forbidden += [p["participant"] for p in visit["participants"]]
    for fmt, text in exports.items():
        for secret in forbidden:
            assert secret not in text, (fmt, secret)

    other = {"Authorization": f"Bearer {identities.evaluator(org='praksis-99')}"}
    response = await client.get("/api/evaluation/report", headers=other)
    assert (await response.json())["visits"] == 0
    gp = {"Authorization": f"Bearer {identities.gp()}"}
    response = await client.get("/api/evaluation/report", headers=gp)
    assert response.status == 403
    response = await client.get("/evaluation")
    page = await response.text()
    assert response.status == 200 and "<h1>Evaluering af videobesøg" in page
