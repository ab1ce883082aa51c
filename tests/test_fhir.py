"""The FHIR R4 endpoint as an EHR uses it, against a real server process with a region's and a
practice's identity providers: book, search, join with the returned links, reschedule, cancel,
and an OperationOutcome for every refusal. Every resource in and out is checked against
fhir.resources' R4B models (R4B's Appointment, Bundle and OperationOutcome are R4's)."""

from __future__ import annotations

import asyncio
import datetime
import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from multidict import CIMultiDict

from server.fhir_mapping import (
    EXT_KIND,
    EXT_LINK_PERIOD,
    EXT_MAX_PARTICIPANTS,
    EXT_MEETING_URL,
    EXT_WAITING_ROOM,
    ROLE_SYSTEM,
    visit_id_of,
)
from tests.support.identity import Identities, make_identities
from tests.support.servers import RunningServer, start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

FHIR_JSON = "application/fhir+json"


class Ehr:
    """An EHR's view of the server: FHIR calls with its region's token."""

    def __init__(self, server: RunningServer, ids: Identities) -> None:
        self.server = server
        self.ids = ids

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], CIMultiDict[str]]:
        sent = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.server.base_url + path, data=data, headers=sent) as r,
        ):
            assert r.content_type == FHIR_JSON, (r.status, await r.text())
            return r.status, await r.json(content_type=None), CIMultiDict(r.headers)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ehr(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ehr]:
    tmp = tmp_path_factory.mktemp("fhir")
    ids = make_identities(tmp / "ids")
    server = await start_server(
        tmp, "--trust-file", str(ids.trust_file), "--auth-failures-per-minute", "10000"
    )
    yield Ehr(server, ids)
    await server.stop()


def role(code: str) -> dict[str, Any]:
    return {"coding": [{"system": ROLE_SYSTEM, "code": code}]}


def instant(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def appointment(start: datetime.datetime, minutes: int = 30, **changes: Any) -> dict[str, Any]:
    """An assisted screen visit as a hospital's EHR books it."""
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": instant(start),
        "end": instant(start + datetime.timedelta(minutes=minutes)),
        "extension": [
            {"url": EXT_KIND, "valueCode": "assisted"},
            {"url": EXT_WAITING_ROOM, "valueBoolean": False},
            {"url": EXT_MAX_PARTICIPANTS, "valuePositiveInt": 4},
        ],
        "participant": [
            {
                "type": [role("citizen")],
                "actor": {"reference": "Patient/pt-1042", "display": "Karen Jensen"},
                "status": "accepted",
            },
            {
                "type": [role("nurse")],
                "actor": {"reference": "Practitioner/np-77", "display": "Ida Holm"},
                "status": "accepted",
            },
            {
                "type": [role("specialist")],
                "actor": {"reference": "PractitionerRole/lung-3", "display": "Overlæge Berg"},
                "status": "accepted",
            },
        ],
    }
    body.update(changes)
    return body


def soon() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(
        minutes=5
    )


def extension(entry: dict[str, Any], url: str) -> Any:
    found = [e for e in entry.get("extension", []) if e["url"] == url]
    assert len(found) == 1, (url, entry)
    return found[0]


def links(resource: dict[str, Any]) -> dict[str, str]:
    return {
        p["type"][0]["coding"][0]["code"]: extension(p, EXT_MEETING_URL)["valueUrl"]
        for p in resource["participant"]
    }


async def ws_join(server: RunningServer, link: str) -> tuple[dict[str, Any], Any, Any]:
    """Join with an invite link's token over the signaling socket; (first answer, socket,
    session) with the socket still open."""
    visit = link.split("/v/", 1)[1].split("#", 1)[0]
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(server.base_url + "/ws")
    await ws.send_json({"type": "join", "token": link.split("#", 1)[1], "visit": visit})
    answer = json.loads((await ws.receive(timeout=10)).data)
    return answer, ws, http


async def join_answer(server: RunningServer, link: str) -> dict[str, Any]:
    answer, ws, http = await ws_join(server, link)
    await ws.close()
    await http.close()
    return answer


def assert_outcome(status: int, body: dict[str, Any], expected: int) -> dict[str, Any]:
    assert status == expected, body
    OperationOutcome.model_validate(body)
    issue: dict[str, Any] = body["issue"][0]
    assert issue["severity"] == "error" and issue["diagnostics"]
    return issue


async def book(ehr: Ehr, start: datetime.datetime | None = None) -> dict[str, Any]:
    request = appointment(start or soon())
    Appointment.model_validate(request)
    status, body, headers = await ehr.call(
        "POST", "/fhir/Appointment", ehr.ids.specialist(), request
    )
    assert status == 201, body
    Appointment.model_validate(body)
    assert headers["Location"].endswith(f"/fhir/Appointment/{body['id']}/_history/1")
    return body


async def test_the_capability_statement_says_what_the_endpoint_does(ehr: Ehr) -> None:
    status, body, _ = await ehr.call("GET", "/fhir/metadata", None)
    assert status == 200
    CapabilityStatement.model_validate(body)
    (resource,) = body["rest"][0]["resource"]
    assert resource["type"] == "Appointment"
    assert {i["code"] for i in resource["interaction"]} == {
        "read",
        "create",
        "update",
        "search-type",
    }
    assert {p["name"] for p in resource["searchParam"]} == {"date", "actor", "status"}


async def test_a_booking_is_recorded_and_its_links_open_the_visit(ehr: Ehr) -> None:
    start = soon()
    body = await book(ehr, start)
    assert body["status"] == "booked" and body["meta"]["versionId"] == "1"
    assert body["start"] == instant(start).replace("+00:00", "Z")
    assert extension(body, EXT_KIND)["valueCode"] == "assisted"
    assert extension(body, EXT_WAITING_ROOM)["valueBoolean"] is False
    assert extension(body, EXT_MAX_PARTICIPANTS)["valuePositiveInt"] == 4
    actors = [p["actor"] for p in body["participant"]]
    assert actors[0] == {"reference": "Patient/pt-1042", "display": "Karen Jensen"}
    period = extension(body["participant"][0], EXT_LINK_PERIOD)["valuePeriod"]
    assert period["start"] < body["start"] < body["end"] < period["end"]
    # Recorded in SQL before the 201: the booking and the EHR's references.
    db = sqlite3.connect(ehr.server.data_dir / "metadata.sqlite3")
    try:
        (state,) = db.execute(
            "SELECT state FROM bookings WHERE visit = ?", (visit_id_of(body["id"]),)
        )
        refs = db.execute(
            "SELECT reference FROM actor_refs WHERE visit = ?", (visit_id_of(body["id"]),)
        )
        assert state == ("scheduled",)
        assert sorted(r[0] for r in refs) == [
            "Patient/pt-1042",
            "Practitioner/np-77",
            "PractitionerRole/lung-3",
        ]
    finally:
        db.close()
    by_role = links(body)
    for code in ("citizen", "specialist"):
        answer = await join_answer(ehr.server, by_role[code])
        assert answer["type"] == "joined", answer
        assert answer["you"]["role"] == code and answer["waiting"] is False
    status, read, headers = await ehr.call(
        "GET", f"/fhir/Appointment/{body['id']}", ehr.ids.specialist()
    )
    assert status == 200 and read["status"] == "arrived", read
    Appointment.model_validate(read)
    assert headers["ETag"] == f'W/"{read["meta"]["versionId"]}"'


async def test_search_by_day_actor_and_status(ehr: Ehr) -> None:
    body = await book(ehr)
    other_day = await book(ehr, soon() + datetime.timedelta(days=3))
    # A day in a search is a day in Denmark.
    day = datetime.datetime.fromisoformat(body["start"]).astimezone(ZoneInfo("Europe/Copenhagen"))
    token = ehr.ids.specialist()
    status, bundle, _ = await ehr.call(
        "GET", f"/fhir/Appointment?date={day.date().isoformat()}", token
    )
    assert status == 200, bundle
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == len(bundle["entry"])
    found = [e["resource"]["id"] for e in bundle["entry"]]
    assert body["id"] in found and other_day["id"] not in found
    status, bundle, _ = await ehr.call(
        "GET", "/fhir/Appointment?actor=Patient/pt-1042&status=booked", token
    )
    found = [e["resource"]["id"] for e in bundle["entry"]]
    assert status == 200 and body["id"] in found and other_day["id"] in found
    status, bundle, _ = await ehr.call("GET", "/fhir/Appointment?status=cancelled", token)
    assert status == 200 and body["id"] not in [e["resource"]["id"] for e in bundle["entry"]]
    status, bundle, _ = await ehr.call("GET", "/fhir/Appointment?actor=Patient/nobody", token)
    assert status == 200 and bundle["total"] == 0


async def test_reschedule_then_cancel_refuses_every_link_and_ends_a_live_call(ehr: Ehr) -> None:
    body = await book(ehr)
    token = ehr.ids.specialist()
    later = datetime.datetime.fromisoformat(body["start"]) + datetime.timedelta(minutes=7)
    moved = appointment(later, 45, id=body["id"], participant=body["participant"])
    status, updated, headers = await ehr.call(
        "PUT", f"/fhir/Appointment/{body['id']}", token, moved
    )
    assert status == 200, updated
    Appointment.model_validate(updated)
    assert updated["start"] == instant(later).replace("+00:00", "Z")
    assert updated["minutesDuration"] == 45 and updated["meta"]["versionId"] == "2"
    assert headers["ETag"] == 'W/"2"'
    by_role = links(body)
    answer, live, http = await ws_join(ehr.server, by_role["citizen"])
    try:
        assert answer["type"] == "joined", answer
        cancelled = {**updated, "status": "cancelled"}
        status, after, _ = await ehr.call(
            "PUT", f"/fhir/Appointment/{body['id']}", token, cancelled
        )
        assert status == 200 and after["status"] == "cancelled", after
        Appointment.model_validate(after)
        # A finished visit shows no names, references or links.
        assert all("actor" not in p for p in after["participant"])
        assert all(len(p["extension"]) == 1 for p in after["participant"])
        # The citizen in the visit is told, with a clear message, and let go.
        told = []
        async with asyncio.timeout(10):
            async for message in live:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                told.append(json.loads(message.data))
        assert {"type": "visit-ended", "reason": "cancelled"} in told, told
    finally:
        await live.close()
        await http.close()
    for link in by_role.values():
        answer = await join_answer(ehr.server, link)
        assert answer["type"] == "error" and answer["code"] == "visit-closed", answer
    status, again, _ = await ehr.call("PUT", f"/fhir/Appointment/{body['id']}", token, cancelled)
    assert status == 200 and again["status"] == "cancelled"
    status, refused, _ = await ehr.call("PUT", f"/fhir/Appointment/{body['id']}", token, moved)
    assert_outcome(status, refused, 409)


def _without(body: dict[str, Any], index: int, key: str) -> dict[str, Any]:
    participants = [dict(p) for p in body["participant"]]
    participants[index].pop(key)
    return {**body, "participant": participants}


def _actor(body: dict[str, Any], index: int, actor: dict[str, str]) -> dict[str, Any]:
    participants = [dict(p) for p in body["participant"]]
    participants[index]["actor"] = actor
    return {**body, "participant": participants}


async def test_invalid_resources_get_an_operation_outcome(ehr: Ehr) -> None:
    token = ehr.ids.specialist()
    good = appointment(soon())
    gp_only = {**good, "participant": good["participant"][:1]}
    gp_only["extension"] = [{"url": EXT_KIND, "valueCode": "conference"}]
    cases: list[tuple[object, int, str | None]] = [
        (b"{not json", 400, None),
        ({"resourceType": "Patient"}, 400, None),
        ({**good, "start": "tomorrow at nine"}, 400, "Appointment.start"),
        ({**good, "priority": "high"}, 400, "Appointment.priority"),
        (_without(good, 0, "type"), 422, "Appointment.participant[0].type"),
        (
            _actor(good, 0, {"reference": "Practitioner/x"}),
            422,
            "Appointment.participant[0].actor.reference",
        ),
        (
            _actor(good, 0, {"reference": "Patient/0101801234"}),
            422,
            "Appointment.participant[0].actor.reference",
        ),
        ({**good, "description": "KOL, forværring"}, 422, "Appointment.description"),
        ({**good, "end": good["start"]}, 422, "Appointment.end"),
        ({**good, "status": "proposed"}, 422, "Appointment.status"),
        (gp_only, 422, None),
        (
            {**good, "extension": [{"url": EXT_MAX_PARTICIPANTS, "valuePositiveInt": 2}]},
            422,
            None,
        ),
    ]
    for body, expected, where in cases:
        status, answer, _ = await ehr.call("POST", "/fhir/Appointment", token, body)
        issue = assert_outcome(status, answer, expected)
        if where is not None:
            assert issue["expression"] == [where], (body, issue)


async def test_protocol_errors_get_an_operation_outcome(ehr: Ehr) -> None:
    token = ehr.ids.specialist()
    body = appointment(soon())
    status, answer, _ = await ehr.call(
        "POST", "/fhir/Appointment", token, body, {"Content-Type": "text/plain"}
    )
    assert_outcome(status, answer, 415)
    status, answer, _ = await ehr.call(
        "GET", "/fhir/metadata", token, headers={"Accept": "application/fhir+xml"}
    )
    assert_outcome(status, answer, 406)
    status, answer, headers = await ehr.call("DELETE", "/fhir/Appointment/v-abc", token)
    assert_outcome(status, answer, 405)
    assert "PUT" in headers["Allow"]
    status, answer, _ = await ehr.call("GET", "/fhir/Appointment/v-nosuchvisit", token)
    assert_outcome(status, answer, 404)
    # Bigger than the server takes (256 KiB): refused before any handler, still an outcome.
    huge = json.dumps({**body, "comment": "x" * 300_000}).encode()
    status, answer, _ = await ehr.call("POST", "/fhir/Appointment", token, huge)
    assert_outcome(status, answer, 413)
    status, answer, _ = await ehr.call("GET", "/fhir/Patient/1", token)
    assert_outcome(status, answer, 404)
    status, answer, _ = await ehr.call("POST", "/fhir/Appointment", None, body)
    assert_outcome(status, answer, 401)
    status, answer, _ = await ehr.call("POST", "/fhir/Appointment", token[:-4] + "AAAA", body)
    issue = assert_outcome(status, answer, 401)
    assert issue["details"]["coding"][0]["code"] == "token-bad-signature"
    status, answer, _ = await ehr.call("GET", "/fhir/Appointment?name=Jensen", token)
    assert_outcome(status, answer, 400)
    status, answer, _ = await ehr.call("GET", "/fhir/Appointment?date=04-12-2026", token)
    assert_outcome(status, answer, 400)
    booked = await book(ehr)
    put_other = {**body, "id": "v-another"}
    status, answer, _ = await ehr.call("PUT", f"/fhir/Appointment/{booked['id']}", token, put_other)
    assert_outcome(status, answer, 400)
    fewer = {**body, "id": booked["id"], "participant": body["participant"][:2]}
    status, answer, _ = await ehr.call("PUT", f"/fhir/Appointment/{booked['id']}", token, fewer)
    assert_outcome(status, answer, 422)


async def test_another_organisation_is_refused_and_audited(ehr: Ehr) -> None:
    body = await book(ehr)
    other = ehr.ids.specialist(org="rh-odense")
    status, answer, _ = await ehr.call("GET", f"/fhir/Appointment/{body['id']}", other)
    assert_outcome(status, answer, 403)
    cancel = {**body, "status": "cancelled"}
    status, answer, _ = await ehr.call("PUT", f"/fhir/Appointment/{body['id']}", other, cancel)
    assert_outcome(status, answer, 403)
    status, bundle, _ = await ehr.call("GET", "/fhir/Appointment", other)
    assert status == 200 and body["id"] not in [e["resource"]["id"] for e in bundle["entry"]]
    # An invite link is no key to the organisation's appointments.
    seat = links(body)["specialist"].split("#", 1)[1]
    status, answer, _ = await ehr.call("GET", "/fhir/Appointment", seat)
    assert_outcome(status, answer, 403)
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{ehr.server.base_url}/api/audit?visit={visit_id_of(body['id'])}",
            headers={"Authorization": f"Bearer {ehr.ids.admin()}"},
        ) as r,
    ):
        records = (await r.json())["records"]
    decisions = {(r["action"], r["result"], r["org"]) for r in records}
    assert ("read-visit", "refused", "rh-odense") in decisions
    assert ("end-visit", "refused", "rh-odense") in decisions
