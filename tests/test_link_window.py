"""A planned visit's opening hours, enforced by the server: its links open the visit from
`link-opens-minutes` before the start until `link-grace-minutes` after the end; a join outside
that window is refused with a precise code, and the link check says where the link stands."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import jwt
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from rooms.roles import Role
from rooms.visit import Visit, VisitKind, VisitState
from server import appkeys
from server.app import create_app
from server.config import Settings
from server.visits import book_visit, invite_links
from tests.conftest import host_principal

Client = TestClient[web.Request, web.Application]


async def book_at(client: Client, start: float, minutes: int = 30) -> tuple[Visit, dict[str, str]]:
    seats = [(Role.CITIZEN, None, None), (Role.GP, None, None)]
    visit = await book_visit(
        client.app,
        host_principal(),
        VisitKind.CONSULTATION,
        seats,
        planned_start=start,
        planned_minutes=minutes,
        waiting_room=False,
    )
    links = invite_links(client.app, visit)
    return visit, {e["role"]: e["url"].split("#", 1)[1] for e in links}


async def join(client: Client, visit: str, token: str) -> dict[str, Any]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    msg = await ws.receive(timeout=10)
    await ws.close()
    assert msg.type is WSMsgType.TEXT
    answer: dict[str, Any] = json.loads(msg.data)
    return answer


async def check(client: Client, visit: str, token: str) -> dict[str, Any]:
    response = await client.get(
        f"/api/visits/{visit}/link", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_before_the_window_a_join_is_refused_with_when_it_opens(client: Client) -> None:
    start = time.time() + 2 * 3600
    visit, tokens = await book_at(client, start)
    link = await check(client, visit.id, tokens["citizen"])
    assert link["window"] == "before"
    assert link["opens_at"] == start - 15 * 60 and link["closes_at"] == start + 60 * 60
    answer = await join(client, visit.id, tokens["citizen"])
    assert answer["type"] == "error" and answer["fatal"] is True
    assert answer["code"] == "visit-not-open-yet"
    assert 6000 < answer["retry_after"] <= 6300
    audit = await client.app[appkeys.AUDIT].query(visit=visit.id)
    assert ("join", "refused", "visit-not-open-yet") in [
        (r.action, r.result, r.reason) for r in audit
    ]
    assert (await client.app[appkeys.STORE].get(visit.id)).state is VisitState.SCHEDULED


async def test_inside_the_window_the_links_open_the_visit(client: Client) -> None:
    visit, tokens = await book_at(client, time.time() + 14 * 60)
    assert (await check(client, visit.id, tokens["citizen"]))["window"] == "open"
    for role in ("citizen", "gp"):
        answer = await join(client, visit.id, tokens[role])
        assert answer["type"] == "joined", answer


async def test_after_the_window_the_visit_is_over(client: Client) -> None:
    visit, tokens = await book_at(client, time.time() - 3 * 3600)
    assert (await check(client, visit.id, tokens["citizen"]))["window"] == "after"
    answer = await join(client, visit.id, tokens["citizen"])
    assert answer["type"] == "error" and answer["code"] == "visit-over", answer


async def test_a_call_in_progress_is_never_cut_off_by_its_window(client: Client) -> None:
    visit, tokens = await book_at(client, time.time() + 60)
    assert (await join(client, visit.id, tokens["gp"]))["type"] == "joined"

    def ran_over(v: Visit) -> None:
        v.transition(VisitState.IN_PROGRESS)
        v.planned_start = time.time() - 3 * 3600

    await client.app[appkeys.STORE].update(visit.id, ran_over)
    assert (await check(client, visit.id, tokens["citizen"]))["window"] == "open"
    assert (await join(client, visit.id, tokens["citizen"]))["type"] == "joined"


async def test_an_unplanned_visit_is_open_while_it_is_live(client: Client) -> None:
    visit = await book_visit(
        client.app, host_principal(), VisitKind.CONSULTATION, [(Role.CITIZEN, None, None)]
    )
    token = invite_links(client.app, visit)[0]["url"].split("#", 1)[1]
    link = await check(client, visit.id, token)
    assert link["window"] == "open" and link["opens_at"] is None and link["closes_at"] is None


async def test_the_window_is_configurable(aiohttp_client: Any, settings: Settings) -> None:
    wide: Client = await aiohttp_client(
        create_app(replace(settings, link_opens_minutes=60, link_grace_minutes=0))
    )
    soon, tokens = await book_at(wide, time.time() + 45 * 60)
    assert (await join(wide, soon.id, tokens["citizen"]))["type"] == "joined"
    just_over, tokens = await book_at(wide, time.time() - 31 * 60)
    assert (await join(wide, just_over.id, tokens["citizen"]))["code"] == "visit-over"


async def test_a_citizen_link_booked_days_ahead_lives_until_its_window_closes(
    client: Client,
) -> None:
    start = time.time() + 3 * 86400
    visit, tokens = await book_at(client, start)
    citizen = jwt.decode(tokens["citizen"], options={"verify_signature": False})
    gp = jwt.decode(tokens["gp"], options={"verify_signature": False})
    assert citizen["exp"] >= start + 60 * 60
    # Staff tokens live at most 12 hours: the EHR reads the Appointment again on the day.
    assert gp["exp"] - gp["iat"] <= 12 * 3600
    assert visit.planned_start == start
