"""The join page's link check: a valid link says what state its visit is in, without taking a
seat; a bad one is refused precisely, at once, rate-limited and audited as a join would be."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from rooms.visit import VisitState
from server import appkeys
from server.app import create_app
from server.config import Settings
from tests.conftest import book

Client = TestClient[web.Request, web.Application]


async def check(client: Client, visit: str, token: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(
        f"/api/visits/{visit}/link", headers={"Authorization": f"Bearer {token}"}
    )
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_a_valid_link_is_checked_without_taking_a_seat(client: Client) -> None:
    visit, tokens = await book(client.app, waiting_room=True)
    status, body = await check(client, visit.id, tokens["citizen"])
    assert status == 200, body
    assert body["visit"] == visit.id and body["state"] == "scheduled"
    assert body["role"] == "citizen" and body["opens_at"] is None
    # Nobody joined: the visit did not open, no event was written, no host was told.
    assert (await client.app[appkeys.STORE].get(visit.id)).state is VisitState.SCHEDULED
    events = await client.app[appkeys.EVENTS].for_visit(visit.id)
    assert not [e for e in events if e.kind.value in ("visit-opened", "participant-joined")]
    audit = await client.app[appkeys.AUDIT].query(visit=visit.id)
    assert [(r.action, r.result) for r in audit][-1] == ("check-link", "allowed")


async def test_a_forged_link_is_refused_and_audited(client: Client) -> None:
    visit, tokens = await book(client.app)
    status, body = await check(client, visit.id, tokens["citizen"][:-6] + "AAAAAA")
    assert status == 401 and body["error"]["code"] == "token-bad-signature"
    audit = await client.app[appkeys.AUDIT].query(visit=visit.id)
    assert ("check-link", "refused", "token-bad-signature") in [
        (r.action, r.result, r.reason) for r in audit
    ]


async def test_a_link_of_another_visit_is_refused(client: Client) -> None:
    _first, tokens = await book(client.app)
    second, _ = await book(client.app)
    status, body = await check(client, second.id, tokens["citizen"])
    assert status == 403 and body["error"]["code"] == "token-visit-mismatch"
    status, body = await check(client, "v-no-such-visit", tokens["citizen"])
    assert status == 403 and body["error"]["code"] == "token-visit-mismatch"


async def test_a_cancelled_or_ended_visit_says_so(client: Client) -> None:
    visit, tokens = await book(client.app)
    await client.app[appkeys.STORE].update(visit.id, lambda v: v.transition(VisitState.CANCELLED))
    status, body = await check(client, visit.id, tokens["nurse"])
    assert status == 200 and body["state"] == "cancelled"


async def test_link_checks_are_rate_limited_like_joins(
    aiohttp_client: Any, settings: Settings
) -> None:
    limited: Client = await aiohttp_client(
        create_app(replace(settings, auth_failures_per_minute=3))
    )
    visit, tokens = await book(limited.app)
    for _ in range(3):
        status, body = await check(limited, visit.id, "not-a-token")
        assert status == 401, body
    status, body = await check(limited, visit.id, tokens["citizen"])
    assert status == 429 and body["error"]["code"] == "rate-limited"
