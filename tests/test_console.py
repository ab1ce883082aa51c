"""The console's server side in process: the trust file's `oidc`, the session cookie and its CSRF
check on the JSON API, one-time sign-in links, the live view's seat states, the .ics invite."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import icalendar
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from rooms.eventlog import EventKind, VisitEvent
from rooms.principal import Principal
from rooms.roles import Role, Sector
from rooms.visit import VisitKind
from server import appkeys
from server.console_feed import ConsoleChanges, seat_states
from server.console_session import COOKIE, sign_link, sign_session
from server.trust import TrustConfigError, load_trust_file
from server.visits import book_visit

Client = TestClient[web.Request, web.Application]

NURSE = Principal(
    subject="n-1",
    issuer="idp",
    role=Role.NURSE,
    sector=Sector.MUNICIPALITY,
    org="kommune-1",
    name="Nina",
)


def _trust(tmp_path: Path, oidc: object) -> Path:
    path = tmp_path / "trust.json"
    entry = {
        "iss": "https://idp.test",
        "sectors": ["municipality"],
        "roles": ["nurse"],
        "orgs": ["kommune-*"],
        "oidc": oidc,
    }
    path.write_text(json.dumps({"issuers": [entry]}))
    return path


def test_an_issuer_declares_its_oidc_discovery_and_needs_no_jwks_of_its_own(
    tmp_path: Path,
) -> None:
    url = "https://idp.test/.well-known/openid-configuration"
    trust = load_trust_file(
        _trust(tmp_path, {"discovery_url": url, "client_id": "c"}), allow_development=False
    )
    oidc = trust.issuers[0].oidc
    assert oidc is not None and oidc.discovery_url == url and oidc.client_id == "c"
    assert oidc.client_secret is None and oidc.scope == "openid profile"


@pytest.mark.parametrize(
    "oidc",
    [
        {"discovery_url": "ftp://x", "client_id": "c"},
        {"discovery_url": "https://idp.test/d"},
        {"discovery_url": "https://idp.test/d", "client_id": "c", "scope": "profile"},
        {"discovery_url": "https://idp.test/d", "client_id": "c", "extra": 1},
        "https://idp.test/d",
    ],
)
def test_a_bad_oidc_block_stops_the_server(tmp_path: Path, oidc: object) -> None:
    with pytest.raises(TrustConfigError):
        load_trust_file(_trust(tmp_path, oidc), allow_development=False)


async def test_seat_states_follow_the_event_log(client: Client) -> None:
    visit = await book_visit(
        client.app,
        NURSE,
        VisitKind.ASSISTED,
        [(Role.CITIZEN, "Inger", None), (Role.NURSE, None, None), (Role.GP, None, None)],
    )
    citizen, nurse, _gp = list(visit.seats)
    events = [
        VisitEvent(visit.id, EventKind.PARTICIPANT_WAITING, citizen, time=10.0),
        VisitEvent(visit.id, EventKind.PARTICIPANT_JOINED, nurse, time=11.0),
    ]
    states = seat_states(visit, events)
    assert states[citizen] == {"status": "waiting", "since": 10.0}
    assert states[nurse]["status"] == "in-call"
    events.append(VisitEvent(visit.id, EventKind.PARTICIPANT_ADMITTED, citizen, time=12.0))
    events.append(VisitEvent(visit.id, EventKind.PARTICIPANT_JOINED, citizen, time=12.5))
    assert seat_states(visit, events)[citizen] == {"status": "in-call", "since": 12.5}
    visit.cancel()
    assert seat_states(visit, events)[citizen]["status"] == "left"


async def test_an_open_console_is_woken_once_per_burst() -> None:
    changes = ConsoleChanges()
    queue = changes.subscribe("kommune-1")
    for _ in range(5):
        changes.notify("kommune-1")
    changes.notify("kommune-2")
    assert queue.qsize() == 1
    changes.unsubscribe("kommune-1", queue)
    changes.notify("kommune-1")
    assert queue.qsize() == 1


def _cookie(client: Client, principal: Principal = NURSE) -> tuple[dict[str, str], str]:
    token, csrf = sign_session(client.app[appkeys.ISSUER], principal)
    return {"Cookie": f"{COOKIE}={token}"}, csrf


BOOKING = {
    "kind": "assisted",
    "planned_start": time.time() + 3600,
    "participants": [{"role": "citizen", "name": "Inger"}, {"role": "nurse"}, {"role": "gp"}],
}


async def test_the_api_takes_the_console_session_only_with_its_csrf_header(
    client: Client,
) -> None:
    headers, csrf = _cookie(client)
    r = await client.post("/api/visits", json=BOOKING, headers=headers)
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf-failed"
    r = await client.post(
        "/api/visits", json=BOOKING, headers={**headers, "X-CSRF-Token": csrf + "x"}
    )
    assert r.status == 403
    r = await client.post("/api/visits", json=BOOKING, headers={**headers, "X-CSRF-Token": csrf})
    assert r.status == 201
    # Reading needs no CSRF header, and the list is the organisation's own.
    r = await client.get("/api/visits", headers=headers)
    assert r.status == 200 and len((await r.json())["visits"]) == 1
    other, _ = _cookie(
        client, Principal("n-2", "idp", Role.NURSE, Sector.MUNICIPALITY, "kommune-2")
    )
    r = await client.get("/api/visits", headers=other)
    assert (await r.json())["visits"] == []


async def test_the_invite_is_an_icalendar_with_the_seats_link_and_no_name(client: Client) -> None:
    headers, csrf = _cookie(client)
    r = await client.post("/api/visits", json=BOOKING, headers={**headers, "X-CSRF-Token": csrf})
    booked = await r.json()
    citizen = booked["participants"][0]["participant"]
    r = await client.get(
        f"/console/visits/{booked['visit']}/invite.ics?participant={citizen}", headers=headers
    )
    assert r.status == 200
    text = await r.text()
    event = icalendar.Calendar.from_ical(text).walk("VEVENT")[0]
    assert f"/v/{booked['visit']}#" in str(event["url"])
    start = event.decoded("dtstart")
    assert isinstance(start, datetime.datetime)
    assert int(start.timestamp()) == int(booked["planned_start"])
    assert "Inger" not in text
    r = await client.get(
        f"/console/visits/{booked['visit']}/invite.ics?participant=nobody", headers=headers
    )
    assert r.status == 404


async def test_a_sign_in_link_opens_one_session_once_and_is_no_api_token(client: Client) -> None:
    token = sign_link(
        client.app[appkeys.ISSUER],
        role=Role.GP,
        org="praksis-1",
        name="Dr. Holm",
        sector=Sector.GENERAL_PRACTICE,
    )
    r = await client.get("/api/visits", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "token-wrong-audience"
    r = await client.post("/console/session", json={"token": token})
    assert r.status == 200
    assert COOKIE in r.cookies and r.cookies[COOKIE]["httponly"]
    assert r.cookies[COOKIE]["samesite"] == "Lax"
    r = await client.post("/console/session", json={"token": token})
    assert r.status == 401 and (await r.json())["error"]["code"] == "link-used"
    r = await client.post(
        "/console/session", json={"token": token}, headers={"Origin": "https://evil.example"}
    )
    assert r.status == 403


async def test_the_page_offers_sign_in_without_a_session_and_the_console_with_one(
    client: Client,
) -> None:
    r = await client.get("/console")
    page = await r.text()
    assert "Log ind på personalekonsollen" in page and "data-csrf" not in page
    assert "script-src" not in r.headers["Content-Security-Policy"]  # default-src 'self'
    headers, csrf = _cookie(client)
    r = await client.get("/console", headers=headers)
    page = await r.text()
    assert f'data-csrf="{csrf}"' in page and "Nina" in page
    evaluator = Principal("e-1", "idp", Role.EVALUATOR, Sector.REGION, "kommune-1")
    r = await client.get("/console", headers=_cookie(client, evaluator)[0])
    assert 'href="/evaluation#' in await r.text()


async def test_a_callback_without_this_browsers_sign_in_is_refused(client: Client) -> None:
    r = await client.get("/console/callback?code=c&state=s", allow_redirects=False)
    assert r.status == 303
    assert r.headers["Location"] == "/console?signin_error=signin-state-mismatch"
    r = await client.get("/console/login?iss=https://nowhere.test", allow_redirects=False)
    assert r.status == 400 and (await r.json())["error"]["code"] == "unknown-issuer"


async def test_serve_prints_a_sign_in_link_for_the_demo_organisation(client: Client) -> None:
    from server.cli import _demo_visit

    announcement: list[str] = []
    hook = _demo_visit(announcement)(client.app)
    await hook.__anext__()
    line = next(line for line in announcement if line.startswith("Staff console"))
    token = line.split("/console#", 1)[1]
    r = await client.post("/console/session", json={"token": token})
    assert r.status == 200 and (await r.json())["role"] == "gp"
    r = await client.get("/api/visits", headers={"Cookie": f"{COOKIE}={r.cookies[COOKIE].value}"})
    assert len((await r.json())["visits"]) == 1  # the demo visit, in the demo organisation
    await hook.aclose()
