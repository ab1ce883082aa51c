"""The clinical outcome and the citizen's experience, as evaluators will need them."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from rooms.eventlog import EventKind
from rooms.quality_log import OutcomeStore, SurveyStore
from rooms.roles import Role
from server import appkeys
from tests.conftest import book
from tests.test_waiting_room import join, next_of

Client = TestClient[web.Request, web.Application]


async def test_the_host_records_an_outcome_and_the_note_stays_out_of_the_log(
    client: Client,
) -> None:
    visit, tokens = await book(client.app)
    gp, joined = await join(client, tokens["gp"], visit.id)
    assert "handled-remotely" in joined["outcomes"]
    citizen, citizen_joined = await join(client, tokens["citizen"], visit.id)
    assert "outcomes" not in citizen_joined

    await citizen.send_json({"type": "outcome", "outcome": "handled-remotely"})
    assert (await next_of(citizen, "error"))["code"] == "forbidden"
    await gp.send_json({"type": "outcome", "outcome": "cured-by-magic"})
    assert (await next_of(gp, "error"))["code"] == "unknown-outcome"
    await gp.send_json(
        {
            "type": "outcome",
            "outcome": "physical-visit-needed",
            "note": "ondt i brystet",
            "id": "o-1",
        }
    )
    ack = await next_of(gp, "outcome-recorded")
    assert (ack["outcome"], ack["ref"]) == ("physical-visit-needed", "o-1")

    db = client.app[appkeys.DATABASE]
    assert (await OutcomeStore(db).for_visits([visit.id]))[visit.id][0] == "physical-visit-needed"
    assert await OutcomeStore(db).note(visit.id) == "ondt i brystet"
    events = await client.app[appkeys.EVENTS].for_visit(visit.id)
    recorded = [e for e in events if e.kind is EventKind.OUTCOME_RECORDED]
    assert [(e.role, e.data) for e in recorded] == [("gp", {"outcome": "physical-visit-needed"})]
    assert "ondt i brystet" not in repr(events)


async def post(client: Client, path: str, token: str, body: Any, status: int) -> Any:
    response = await client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status == status, await response.text()
    return await response.json()


async def test_the_citizen_answers_three_optional_questions_after_leaving(
    client: Client,
) -> None:
    visit, tokens = await book(client.app, Role.CITIZEN, Role.NURSE, Role.GP)
    path = f"/api/visits/{visit.id}/survey"
    answered = await post(client, path, tokens["citizen"], {"q1": 5, "q3": 4}, 201)
    assert answered["answers"] == {"q1": 5, "q2": None, "q3": 4}
    refused = await post(client, path, tokens["nurse"], {"q1": 1}, 403)
    assert refused["error"]["code"] == "forbidden"
    for bad in ({"q1": 6}, {"q1": "5"}, {"q4": 3}, {"q1": True}):
        assert (await post(client, path, tokens["citizen"], bad, 400))["error"]["code"] == (
            "invalid-field"
        )
    surveys = await SurveyStore(client.app[appkeys.DATABASE]).for_visits([visit.id])
    assert [s.answers for s in surveys] == [(5, None, 4)]
    events = await client.app[appkeys.EVENTS].for_visit(visit.id)
    survey = [e for e in events if e.kind is EventKind.SURVEY_ANSWERED]
    assert [(e.role, e.data) for e in survey] == [("citizen", {"q1": 5, "q2": None, "q3": 4})]


async def test_an_outcome_can_be_recorded_afterwards_over_http(client: Client) -> None:
    visit, tokens = await book(client.app)
    path = f"/api/visits/{visit.id}/outcome"
    await post(client, path, tokens["gp"], {"outcome": "new-video-visit"}, 201)
    refused = await post(client, path, tokens["citizen"], {"outcome": "other"}, 403)
    assert refused["error"]["code"] == "forbidden"
    bad = await post(client, path, tokens["gp"], {"outcome": "x", "extra": 1}, 400)
    assert bad["error"]["code"] == "invalid-field"
