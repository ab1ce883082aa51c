"""The booking API over HTTP: planned times, listing, changes, cancelling, links, validation."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient

from rooms.eventlog import EventKind
from rooms.ids import VisitId
from server import appkeys
from server.app import create_app
from server.config import Settings
from tests.support.identity import Identities, make_identities

Client = TestClient[web.Request, web.Application]

PLANNED = 1_900_000_000.0  # 2030-03-17, in the window the API accepts (2000 to 2100)


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return make_identities(tmp_path / "idp")


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, identities: Identities) -> Client:
    configured = replace(
        settings, trust_file=identities.trust_file, auth_failures_per_minute=10_000
    )
    made: Client = await aiohttp_client(create_app(configured))
    return made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_of(link: str) -> str:
    return link.split("#", 1)[1]


async def book(client: Client, token: str, expect: int = 201, **fields: Any) -> dict[str, Any]:
    body = {"participants": [{"role": "citizen"}, {"role": "nurse"}, {"role": "gp"}], **fields}
    response = await client.post("/api/visits", json=body, headers=bearer(token))
    data: dict[str, Any] = await response.json()
    assert response.status == expect, data
    return data


async def call(
    client: Client,
    method: str,
    path: str,
    token: str,
    expect: int,
    json: Any = None,
    params: dict[str, str] | None = None,
) -> Any:
    response = await client.request(method, path, json=json, params=params, headers=bearer(token))
    data = await response.json()
    assert response.status == expect, (method, path, data)
    assert response.content_type == "application/json"
    return data


async def join(client: Client, link: str, visit: str) -> ClientWebSocketResponse:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token_of(link), "visit": visit})
    joined = await ws.receive_json(timeout=10)
    assert joined["type"] == "joined", joined
    return ws


async def test_create_with_a_planned_time_as_a_number_or_iso_8601(
    client: Client, identities: Identities
) -> None:
    gp = identities.gp()
    as_number = await book(client, gp, planned_start=PLANNED, planned_minutes=30)
    assert (as_number["planned_start"], as_number["planned_minutes"]) == (PLANNED, 30)
    assert as_number["state"] == "scheduled" and as_number["org"] == "praksis-7"
    assert set(as_number["links"]) == {"citizen", "nurse", "gp"}

    local = datetime.datetime(
        2030, 5, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    as_iso = await book(client, gp, planned_start=local.isoformat())
    assert as_iso["planned_start"] == local.timestamp()
    assert as_iso["planned_minutes"] == 15  # the default
    as_utc = await book(client, gp, planned_start="2030-05-01T07:30:00Z")
    assert as_utc["planned_start"] == local.timestamp()

    stored = await call(client, "GET", f"/api/visits/{as_iso['visit']}", gp, 200)
    assert stored["planned_start"] == local.timestamp()
    unplanned = await book(client, gp)
    assert unplanned["planned_start"] is None


async def test_the_list_holds_the_own_organisations_visits_newest_planned_first(
    client: Client, identities: Identities
) -> None:
    gp = identities.gp()
    early = await book(client, gp, planned_start=PLANNED)
    unplanned = await book(client, gp)
    late = await book(client, gp, planned_start=PLANNED + 3600)
    listed = (await call(client, "GET", "/api/visits", gp, 200))["visits"]
    assert [v["id"] for v in listed] == [late["visit"], early["visit"], unplanned["visit"]]
    assert all("links" not in v and "participants" not in v for v in listed)
    assert {s["role"] for s in listed[0]["seats"]} == {"citizen", "nurse", "gp"}

    # Another practice, and a municipality, see none of them.
    other_gp = identities.gp(org="praksis-99")
    assert (await call(client, "GET", "/api/visits", other_gp, 200))["visits"] == []
    assert (await call(client, "GET", "/api/visits", identities.nurse(), 200))["visits"] == []
    # A nurse of the same organisation (the practice's own nurse) does.
    same_org_nurse = identities.praksis.sign(
        sector="general-practice", role="nurse", org="praksis-7"
    )
    assert len((await call(client, "GET", "/api/visits", same_org_nurse, 200))["visits"]) == 3

    window = {"from": str(PLANNED + 1), "to": "2100-01-01T00:00:00+00:00"}
    in_window = (await call(client, "GET", "/api/visits", gp, 200, params=window))["visits"]
    assert [v["id"] for v in in_window] == [late["visit"]]
    await call(client, "POST", f"/api/visits/{late['visit']}/cancel", gp, 200)
    scheduled = await call(client, "GET", "/api/visits", gp, 200, params={"state": "scheduled"})
    assert [v["id"] for v in scheduled["visits"]] == [early["visit"], unplanned["visit"]]
    cancelled = await call(client, "GET", "/api/visits", gp, 200, params={"state": "cancelled"})
    assert [v["id"] for v in cancelled["visits"]] == [late["visit"]]

    bad = await call(client, "GET", "/api/visits", gp, 400, params={"state": "done"})
    assert bad["error"]["code"] == "invalid-query" and "'state'" in bad["error"]["message"]
    bad = await call(client, "GET", "/api/visits", gp, 400, params={"from": "soon"})
    assert "'from'" in bad["error"]["message"]
    # An invite link opens its own visit only; it lists nothing, even a host's link.
    for role in ("citizen", "gp"):
        refused = await call(client, "GET", "/api/visits", token_of(early["links"][role]), 403)
        assert refused["error"]["code"] == "forbidden"
    await call(client, "GET", "/api/visits", identities.admin(), 403)
    records = await client.app[appkeys.AUDIT].query()
    assert {(r.action, r.result) for r in records} >= {
        ("read-visit", "allowed"),
        ("read-visit", "refused"),
    }


async def test_the_host_changes_the_booking(client: Client, identities: Identities) -> None:
    gp = identities.gp()
    visit = await book(client, gp, planned_start=PLANNED)
    path = f"/api/visits/{visit['visit']}"
    change = {
        "planned_start": "2031-01-02T08:00:00+01:00",
        "planned_minutes": 45,
        "waiting_room": False,
        "max_participants": 4,
    }
    changed = await call(client, "PATCH", path, gp, 200, json=change)
    expected = datetime.datetime(2031, 1, 2, 7, 0, tzinfo=datetime.UTC).timestamp()
    assert (
        changed["planned_start"],
        changed["planned_minutes"],
        changed["waiting_room"],
        changed["max_participants"],
        changed["state"],
    ) == (expected, 45, False, 4, "scheduled")
    assert changed["updated_at"] >= visit["updated_at"]
    assert (await call(client, "GET", path, gp, 200))["planned_minutes"] == 45
    # planned_start can be cleared; fields left out are kept.
    cleared = await call(client, "PATCH", path, gp, 200, json={"planned_start": None})
    assert cleared["planned_start"] is None and cleared["planned_minutes"] == 45

    # Fewer places than seats booked: the visit would be over-full.
    full = await call(client, "PATCH", path, gp, 409, json={"max_participants": 2})
    assert full["error"]["code"] == "visit-full"
    # Only the visit's host, in the visit's organisation, may change it.
    await call(
        client, "PATCH", path, identities.gp(org="praksis-99"), 403, json={"waiting_room": True}
    )
    await call(client, "PATCH", path, identities.evaluator(org="praksis-7"), 403, json={})
    await call(client, "PATCH", path, token_of(visit["links"]["citizen"]), 403, json={})
    await call(client, "PATCH", "/api/visits/v-nosuchvisit", gp, 404, json={"waiting_room": True})
    empty = await call(client, "PATCH", path, gp, 400, json={})
    assert empty["error"]["code"] == "invalid-body"
    state = await call(client, "PATCH", path, gp, 400, json={"state": "ended"})
    assert (state["error"]["code"], state["error"]["field"]) == ("invalid-field", "state")


async def test_cancel_once_then_409_with_the_current_state(
    client: Client, identities: Identities
) -> None:
    gp = identities.gp()
    visit = await book(client, gp)
    path = f"/api/visits/{visit['visit']}"
    # Someone who may not end the visit may not cancel it either.
    await call(client, "POST", path + "/cancel", identities.gp(org="praksis-99"), 403)
    await call(client, "POST", path + "/cancel", token_of(visit["links"]["citizen"]), 403)
    assert await call(client, "POST", path + "/cancel", gp, 200) == {
        "visit": visit["visit"],
        "state": "cancelled",
    }
    again = await call(client, "POST", path + "/cancel", gp, 409)
    assert (again["error"]["code"], again["error"]["current"]) == (
        "invalid-transition",
        "cancelled",
    )
    assert (await call(client, "GET", path, gp, 200))["state"] == "cancelled"
    for method, suffix, body in (
        ("PATCH", "", {"planned_minutes": 20}),
        ("POST", "/end", None),
        ("POST", "/links", None),
        ("POST", "/participants", {"role": "relative"}),
    ):
        refused = await call(client, method, path + suffix, gp, 409, json=body)
        assert refused["error"]["current"] == "cancelled", suffix
    events = await client.app[appkeys.EVENTS].for_visit(VisitId(visit["visit"]))
    cancelled = [e for e in events if e.kind is EventKind.VISIT_CANCELLED]
    assert [e.kind for e in events if e.kind is EventKind.VISIT_ENDED] == []
    assert (len(cancelled), cancelled[0].role, cancelled[0].org) == (1, "gp", "praksis-7")
    # The links of a cancelled visit open nothing.
    ws = await client.ws_connect("/ws")
    await ws.send_json(
        {"type": "join", "token": token_of(visit["links"]["citizen"]), "visit": visit["visit"]}
    )
    assert (await ws.receive_json(timeout=10))["code"] == "visit-closed"
    await ws.close()


async def test_cancelling_an_open_visit_tells_whoever_is_connected(
    client: Client, identities: Identities
) -> None:
    gp = identities.gp()
    visit = await book(client, gp, waiting_room=False)
    ws = await join(client, visit["links"]["citizen"], visit["visit"])
    path = f"/api/visits/{visit['visit']}"
    assert (await call(client, "GET", path, gp, 200))["state"] == "open"
    await call(client, "POST", path + "/cancel", gp, 200)
    while (message := await ws.receive(timeout=10)).type is WSMsgType.TEXT:
        if message.json()["type"] == "visit-ended":
            # The page says the visit is cancelled, not merely over.
            assert message.json()["reason"] == "cancelled"
            break
    else:
        pytest.fail(f"no visit-ended before {message.type}")
    assert (await ws.receive(timeout=10)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    await ws.close()


async def test_invalid_transitions_answer_409_with_the_current_state(
    client: Client, identities: Identities
) -> None:
    gp = identities.gp()
    # In progress (two people in the call): no cancelling and no booking changes; ending works.
    visit = await book(client, gp, waiting_room=False)
    path = f"/api/visits/{visit['visit']}"
    sockets = [await join(client, visit["links"][r], visit["visit"]) for r in ("citizen", "gp")]
    assert (await call(client, "GET", path, gp, 200))["state"] == "in-progress"
    for method, suffix, body in (("POST", "/cancel", None), ("PATCH", "", {"kind": "assisted"})):
        refused = await call(client, method, path + suffix, gp, 409, json=body)
        assert (refused["error"]["code"], refused["error"]["current"]) == (
            "invalid-transition",
            "in-progress",
        )
    assert (await call(client, "POST", path + "/end", gp, 200))["state"] == "ended"
    for ws in sockets:
        await ws.close()
    # Ended: nothing moves it any more, and ending it again is refused too.
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/end", None),
        ("POST", "/cancel", None),
        ("PATCH", "", {"waiting_room": True}),
        ("POST", "/links", None),
    ]
    for method, suffix, body in attempts:
        refused = await call(client, method, path + suffix, gp, 409, json=body)
        assert refused["error"]["current"] == "ended", suffix


LONG_NAME = "x" * 81


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"planned_start": "tomorrow"}, "planned_start"),
        ({"planned_start": "2030-05-01T09:30:00"}, "planned_start"),  # no timezone
        ({"planned_start": 1e20}, "planned_start"),
        ({"planned_start": 12.5}, "planned_start"),  # 1970: not a booking
        ({"planned_start": True}, "planned_start"),
        ({"planned_minutes": 0}, "planned_minutes"),
        ({"planned_minutes": 481}, "planned_minutes"),
        ({"planned_minutes": "15"}, "planned_minutes"),
        ({"planned_minutes": 15.5}, "planned_minutes"),
        ({"waiting_room": "yes"}, "waiting_room"),
        ({"waiting_room": None}, "waiting_room"),
        ({"max_participants": 1}, "max_participants"),
        ({"max_participants": 13}, "max_participants"),
        ({"max_participants": True}, "max_participants"),
        ({"kind": "surgery"}, "kind"),
        ({"kind": None}, "kind"),
        ({"participants": []}, "participants"),
        ({"participants": "citizen"}, "participants"),
        ({"participants": ["citizen"]}, "participants[0]"),
        ({"participants": [{"role": "admin"}]}, "participants[0].role"),
        ({"participants": [{"role": "gp"}, {"role": "surgeon"}]}, "participants[1].role"),
        (
            {"participants": [{"role": "gp"}, {"role": "citizen", "name": LONG_NAME}]},
            "participants[1].name",
        ),
        ({"participants": [{"role": "gp", "sector": "moon"}]}, "participants[0].sector"),
        ({"participants": [{"role": "citizen", "cpr": "0101901234"}]}, "participants[0].cpr"),
        ({"title": "Inger, blood sugar"}, "title"),  # no free text about the citizen
        ({"kind": "conference"}, "participants"),  # no specialist
    ],
)
async def test_validation_errors_name_the_field(
    client: Client, identities: Identities, change: dict[str, Any], field: str
) -> None:
    error = (await book(client, identities.gp(), expect=400, **change))["error"]
    assert (error["code"], error["field"]) == ("invalid-field", field), error
    assert f"'{field}" in error["message"], error


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"planned_start": "next week"}, "planned_start"),
        ({"planned_minutes": 500}, "planned_minutes"),
        ({"waiting_room": 0}, "waiting_room"),
        ({"max_participants": 20}, "max_participants"),
        ({"kind": "party"}, "kind"),
        ({"participants": [{"role": "relative"}]}, "participants"),  # seats: POST .../participants
    ],
)
async def test_patch_validation_errors_name_the_field(
    client: Client, identities: Identities, change: dict[str, Any], field: str
) -> None:
    gp = identities.gp()
    visit = await book(client, gp)
    path = f"/api/visits/{visit['visit']}"
    error = (await call(client, "PATCH", path, gp, 400, json=change))["error"]
    assert (error["code"], error["field"]) == ("invalid-field", field), error
    assert f"'{field}'" in error["message"]


async def test_a_kind_the_seats_do_not_suit_is_a_conflict(
    client: Client, identities: Identities
) -> None:
    """Valid on its own, refused for the visit as it stands (it has no specialist): 409."""
    gp = identities.gp()
    visit = await book(client, gp)
    path = f"/api/visits/{visit['visit']}"
    error = (await call(client, "PATCH", path, gp, 409, json={"kind": "conference"}))["error"]
    assert (error["code"], error["field"]) == ("invalid-field", "kind"), error
    assert (await call(client, "GET", path, gp, 200))["kind"] == "consultation"


async def test_more_seats_than_places_is_409_visit_full(
    client: Client, identities: Identities
) -> None:
    gp = identities.gp()
    seven = [{"role": "gp"}] + [{"role": "relative"}] * 6
    full = await book(client, gp, expect=409, participants=seven)  # default: 6 places
    assert full["error"]["code"] == "visit-full"
    assert (await book(client, gp, expect=409, max_participants=2))["error"]["code"] == "visit-full"
    visit = await book(client, gp, max_participants=4)
    path = f"/api/visits/{visit['visit']}/participants"
    await call(client, "POST", path, gp, 201, json={"role": "interpreter"})
    refused = await call(client, "POST", path, gp, 409, json={"role": "relative"})
    assert refused["error"]["code"] == "visit-full"
    bad = await call(client, "POST", path, gp, 400, json={"role": "relative", "note": "x"})
    assert bad["error"]["field"] == "note"
    assert (await book(client, gp, max_participants=12, participants=seven))[
        "max_participants"
    ] == 12


async def test_reissued_links_open_the_visit(client: Client, identities: Identities) -> None:
    gp = identities.gp()
    visit = await book(client, gp)
    path = f"/api/visits/{visit['visit']}/links"
    await call(client, "POST", path, identities.gp(org="praksis-99"), 403)
    await call(client, "POST", path, token_of(visit["links"]["citizen"]), 403)
    reissued = await call(client, "POST", path, gp, 200)
    assert (reissued["visit"], reissued["state"]) == (visit["visit"], "scheduled")
    assert set(reissued["links"]) == set(visit["links"])
    assert reissued["links"]["citizen"] != visit["links"]["citizen"]
    before = {p["participant"]: p["role"] for p in visit["participants"]}
    assert {p["participant"]: p["role"] for p in reissued["participants"]} == before
    ws = await join(client, reissued["links"]["citizen"], visit["visit"])
    await ws.close()
    # A host's own link (a seat token) may re-issue the links too.
    await call(client, "POST", path, token_of(reissued["links"]["gp"]), 200)


async def test_the_waiting_room_flag_round_trips(client: Client, identities: Identities) -> None:
    gp = identities.gp()
    default = await book(client, gp)
    assert default["waiting_room"] is True
    visit = await book(client, gp, waiting_room=False)
    path = f"/api/visits/{visit['visit']}"
    assert visit["waiting_room"] is False
    assert (await call(client, "GET", path, gp, 200))["waiting_room"] is False
    listed = (await call(client, "GET", "/api/visits", gp, 200))["visits"]
    assert {v["id"]: v["waiting_room"] for v in listed} == {
        default["visit"]: True,
        visit["visit"]: False,
    }
    await call(client, "PATCH", path, gp, 200, json={"waiting_room": True})
    assert (await call(client, "GET", path, gp, 200))["waiting_room"] is True
    stored = await client.app[appkeys.STORE].get(VisitId(visit["visit"]))
    assert stored.waiting_room is True


async def test_a_conference_of_a_gp_and_a_specialist(
    client: Client, identities: Identities
) -> None:
    gp = identities.gp()
    seats = [{"role": "gp", "name": "Dr. Holm"}, {"role": "specialist"}]
    conference = await book(client, gp, kind="conference", participants=seats)
    assert conference["kind"] == "conference"
    assert set(conference["links"]) == {"gp", "specialist"}
    stored = await call(client, "GET", f"/api/visits/{conference['visit']}", gp, 200)
    assert [(s["role"], s["sector"]) for s in stored["seats"]] == [
        ("gp", "general-practice"),
        ("specialist", "region"),
    ]
    with_citizen = await book(
        client, gp, kind="conference", participants=[{"role": "citizen"}, *seats]
    )
    assert set(with_citizen["links"]) == {"citizen", "gp", "specialist"}
    ws = await join(client, conference["links"]["specialist"], conference["visit"])
    await ws.close()
    # A visit that has both can become a conference; one without a specialist cannot.
    plain = await book(client, gp, participants=[{"role": "gp"}, {"role": "specialist"}])
    changed = await call(
        client, "PATCH", f"/api/visits/{plain['visit']}", gp, 200, json={"kind": "conference"}
    )
    assert changed["kind"] == "conference"
