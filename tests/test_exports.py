"""CSV, JSON and FHIR exports: pseudonymous, codes only, and a FHIR Bundle that validates.

FHIR validation uses fhir.resources' R4B models (`fhir.resources.R4B`): fhir.resources ships no
R4 (4.0.1) models that work with pydantic 2, and Encounter and QuestionnaireResponse are the same
in R4 and R4B.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from rooms.evaluation import VisitSummary, summarize
from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.exports import (
    QUESTIONNAIRE_URL,
    UNRECOGNISED,
    Pseudonymizer,
    code,
    collect_summaries,
    fhir_bundle,
    fhir_json,
    participants_csv,
    visits_csv,
    visits_json,
)
from rooms.ids import ParticipantId, VisitId
from rooms.quality_log import (
    OutcomeStore,
    QualityRecord,
    SqlQualityLog,
    SurveyRecord,
    SurveyStore,
)
from rooms.sql import Database
from tests.sqlbackends import Backend, backend, database  # noqa: F401

KEY = b"k" * 32
T0 = 1_739_174_400.0  # 2025-02-10 08:00 UTC
VISIT = "v-Wj075zlDPMn9"
SEATS = {
    "p-Cit1zenSeat01": ("citizen", "citizen"),
    "p-NurseSeat0002": ("nurse", "municipality"),
    "p-GpSeat0000003": ("gp", "general-practice"),
}
CITIZEN, NURSE, GP = SEATS
TOKEN = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJwLUNpdDF6ZW5TZWF0MDEifQ.c2lnbmF0dXJl"
NAME = "Inger Hansen"
NOTE = "ondt i brystet"
ADDRESS = "Boulevarden 12, 9000 Aalborg"
PLANTED = (TOKEN, NAME, NOTE, ADDRESS, "Inger", "Hansen", "brystet", "Boulevarden", "Aalborg")
RAW_IDS = (VISIT, *SEATS)


def ev(what: EventKind, t: float, participant: str | None = None, **data: object) -> VisitEvent:
    role, sector = SEATS[participant] if participant else ("gp", "general-practice")
    return VisitEvent(
        visit=VisitId(VISIT),
        kind=what,
        participant=ParticipantId(participant) if participant else None,
        role=role,
        sector=sector,
        org="kommune-851",
        data=dict(data),
        time=T0 + t,
    )


def planted_visit() -> list[VisitEvent]:
    """A visit whose events carry, where no exporter should look, everything we must not leak."""
    return [
        ev(
            EventKind.VISIT_CREATED,
            0,
            kind="assisted",
            seats=3,
            planned_start=T0 + 60,
            name=NAME,
            address=ADDRESS,
            token=TOKEN,
        ),
        *(ev(EventKind.PARTICIPANT_INVITED, 1, p, name=NAME, sub=p) for p in SEATS),
        ev(EventKind.PARTICIPANT_JOINED, 100, NURSE, token=TOKEN),
        ev(EventKind.MEDIA_FIRST_FRAME, 102, NURSE, media="video", direction="up"),
        ev(EventKind.CITIZEN_ASSISTED, 103, NURSE, on=True),
        ev(EventKind.PARTICIPANT_WAITING, 110, GP),
        ev(EventKind.PARTICIPANT_ADMITTED, 130, GP),
        ev(EventKind.PARTICIPANT_JOINED, 130, GP),
        ev(EventKind.MEDIA_FIRST_FRAME, 131, GP, media="audio", direction="up"),
        ev(EventKind.PARTICIPANT_LEFT, 800, NURSE, reason="left", text=NOTE),
        ev(EventKind.OUTCOME_RECORDED, 850, GP, outcome="admission-avoided", note=NOTE),
        ev(EventKind.VISIT_ENDED, 900, reason="host"),
    ]


def samples() -> list[QualityRecord]:
    return [
        QualityRecord(
            time=T0 + 200 + 5 * n,
            visit=VISIT,
            participant=p,
            role=SEATS[p][0],
            sector=SEATS[p][1],
            level="good",
            rtt_ms=40.0 + n,
            loss_up=0.01,
            loss_down=0.0,
            jitter_ms=3.0,
            bitrate_up_kbps=900.0,
            bitrate_down_kbps=1800.0,
            fps_up=29.0,
        )
        for n in range(6)
        for p in (NURSE, GP)
    ]


async def record_everything(db: Database) -> None:
    events = SqlEventLog(db)
    for event in planted_visit():
        await events.append(event)
    await SqlQualityLog(db).record_many(samples())
    await OutcomeStore(db).record(VISIT, "admission-avoided", NOTE, T0 + 850)
    await SurveyStore(db).record(VISIT, CITIZEN, (4, 5, None), T0 + 1000)
    await SurveyStore(db).record(VISIT, NURSE, (3, 3, 3), T0 + 1001)


def all_exports(summaries: list[VisitSummary], pseudonyms: Pseudonymizer) -> dict[str, str]:
    return {
        "visits.csv": visits_csv(summaries, pseudonyms),
        "participants.csv": participants_csv(summaries, pseudonyms),
        "visits.json": visits_json(summaries, pseudonyms),
        "bundle.json": fhir_json(summaries, pseudonyms, generated_at=T0 + 86400),
    }


def other_visit_with_free_text_where_codes_belong() -> VisitSummary:
    """Free text put into code fields: the exporter must not pass it on."""
    s = summarize("v-0therVisit00", as_visit("v-0therVisit00", planted_visit()))
    return replace(s, outcome=f"{NAME}: {NOTE}", org=ADDRESS, kind=NAME, no_shows=[NOTE])


def as_visit(visit: str, events: list[VisitEvent]) -> list[VisitEvent]:
    return [replace(e, visit=VisitId(visit)) for e in events]


async def test_no_personal_data_or_raw_id_in_any_export(database: Database) -> None:  # noqa: F811
    await record_everything(database)
    summaries = await collect_summaries(
        [VISIT],
        SqlEventLog(database),
        SqlQualityLog(database),
        OutcomeStore(database),
        SurveyStore(database),
    )
    assert await OutcomeStore(database).note(VISIT) == NOTE  # it is stored, just never exported
    summaries.append(other_visit_with_free_text_where_codes_belong())
    exports = all_exports(summaries, Pseudonymizer(KEY))
    for name, text in exports.items():
        lowered = text.lower()
        for secret in (*PLANTED, *RAW_IDS, "v-0therVisit00"):
            assert secret.lower() not in lowered, f"{secret!r} leaked into {name}"
        # Nothing shaped like one of our ids, a JWS or a CPR number.
        assert not re.search(r"\b[vp]-[A-Za-z0-9_-]{6,}", text), name
        assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}", text), name
        assert not re.search(r"\b\d{6}-?\d{4}\b", text), name
    assert UNRECOGNISED in exports["visits.csv"]


async def test_summaries_read_from_the_stores(database: Database) -> None:  # noqa: F811
    await record_everything(database)
    [s] = await collect_summaries(
        [VISIT],
        SqlEventLog(database),
        SqlQualityLog(database),
        OutcomeStore(database),
        SurveyStore(database),
    )
    assert s.outcome == "admission-avoided" and s.assisted
    assert s.quality.samples == 12 and s.quality.metrics["rtt_ms"].worst == 45.0
    assert s.experience is not None and s.experience.mean == pytest.approx(4.5)
    assert len(s.surveys) == 2
    assert s.no_shows == []  # the citizen sat with the nurse


def summaries() -> list[VisitSummary]:
    quality = samples()
    answers = [SurveyRecord(T0 + 1000, VISIT, CITIZEN, 4, 5, None)]
    return [summarize(VISIT, planted_visit(), quality, surveys=answers)]


def test_pseudonyms_are_stable_keyed_and_shaped() -> None:
    one, again, other = Pseudonymizer(KEY), Pseudonymizer(KEY), Pseudonymizer(b"x" * 32)
    assert re.fullmatch(r"v[0-9a-f]{16}", one.visit(VISIT))
    assert re.fullmatch(r"p[0-9a-f]{16}", one.participant(VISIT, CITIZEN))
    assert one.visit(VISIT) == again.visit(VISIT) != other.visit(VISIT)
    assert one.participant(VISIT, CITIZEN) == again.participant(VISIT, CITIZEN)
    assert one.participant(VISIT, CITIZEN) != one.participant("v-another", CITIZEN)
    assert one.participant(VISIT, CITIZEN) != other.participant(VISIT, CITIZEN)
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymizer(b"short")


def test_codes_pass_and_free_text_does_not() -> None:
    assert code("admission-avoided") == "admission-avoided"
    assert code("kommune-851") == "kommune-851"
    assert code(None) is None
    for text in (NAME, NOTE, ADDRESS, "", "-x", "a" * 65, "æble"):
        assert code(text) == UNRECOGNISED


def test_visits_csv_one_row_per_visit() -> None:
    pseudonyms = Pseudonymizer(KEY)
    rows = list(csv.DictReader(io.StringIO(visits_csv(summaries(), pseudonyms))))
    assert len(rows) == 1
    row = rows[0]
    assert row["visit"] == pseudonyms.visit(VISIT)
    assert row["kind"] == "assisted" and row["org"] == "kommune-851"
    assert row["state"] == "ended" and row["end_reason"] == "host"
    assert row["started_at"] == "2025-02-10T08:01:40+00:00"
    assert row["duration_seconds"] == "800.0" and row["week"] == "2025-W07"
    assert row["participants_invited"] == "3" and row["participants_joined"] == "2"
    assert row["sectors_present"] == "general-practice;municipality"
    assert row["assisted"] == "true" and row["no_shows"] == ""
    assert row["technical_failure"] == "false" and row["failure_reasons"] == ""
    assert row["outcome"] == "admission-avoided"
    assert (row["experience_q1"], row["experience_q3"], row["experience_mean"]) == ("4", "", "4.5")
    assert row["rtt_ms_worst"] == "45.0" and row["bitrate_up_kbps_worst"] == "900.0"


def test_participants_csv_one_row_per_participant() -> None:
    pseudonyms = Pseudonymizer(KEY)
    rows = list(csv.DictReader(io.StringIO(participants_csv(summaries(), pseudonyms))))
    assert [r["role"] for r in rows] == ["citizen", "nurse", "gp"]
    assert {r["visit"] for r in rows} == {pseudonyms.visit(VISIT)}
    gp = rows[2]
    assert gp["participant"] == pseudonyms.participant(VISIT, GP)
    assert gp["joined"] == "true" and gp["waiting_seconds"] == "20.0"
    assert gp["seconds_in_call"] == "770.0" and gp["reconnects"] == "0"
    assert rows[0]["joined"] == "false" and rows[0]["seconds_in_call"] == "0"


def test_json_visit_objects() -> None:
    pseudonyms = Pseudonymizer(KEY)
    [visit] = json.loads(visits_json(summaries(), pseudonyms))
    assert visit["visit"] == pseudonyms.visit(VISIT)
    assert visit["outcome"] == "admission-avoided"
    assert visit["experience"] == {"q1": 4, "q2": 5, "q3": None, "mean": 4.5}
    assert visit["quality"]["samples"] == 12
    assert visit["quality"]["rtt_ms"] == {"samples": 12, "median": 42.5, "p95": 45.0, "worst": 45.0}
    assert [p["role"] for p in visit["participants"]] == ["citizen", "nurse", "gp"]
    assert visit["participants"][1]["participant"] == pseudonyms.participant(VISIT, NURSE)


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_fhir_bundle_validates_and_says_what_happened() -> None:
    pseudonyms = Pseudonymizer(KEY)
    cancelled_events = [*planted_visit()[:4], ev(EventKind.VISIT_CANCELLED, 50)]
    cancelled = summarize("v-cancelled01", as_visit("v-cancelled01", cancelled_events))
    live = summarize("v-live0000001", as_visit("v-live0000001", planted_visit()[:8]))
    data = fhir_bundle([*summaries(), cancelled, live], pseudonyms, generated_at=T0 + 86400)
    bundle = Bundle.model_validate(data)  # R4B models (see the module docstring)
    assert bundle.type == "collection" and len(bundle.entry or []) == 4
    for e in data["entry"]:
        # Each resource on its own too, with the model of its type.
        if e["resource"]["resourceType"] == "Encounter":
            Encounter.model_validate(e["resource"])
        else:
            QuestionnaireResponse.model_validate(e["resource"])
        assert e["fullUrl"].endswith(f"/{e['resource']['resourceType']}/{e['resource']['id']}")

    ended, was_cancelled, in_progress = resources(data, "Encounter")
    visit = pseudonyms.visit(VISIT)
    assert ended["id"] == visit and ended["identifier"][0]["value"] == visit
    assert ended["status"] == "finished"
    assert ended["class"] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "VR",
        "display": "virtual",
    }
    assert ended["type"][0]["text"] == "assisted"
    assert ended["period"] == {
        "start": "2025-02-10T08:01:40+00:00",
        "end": "2025-02-10T08:15:00+00:00",
    }
    assert ended["length"]["value"] == pytest.approx(800 / 60, abs=0.01)
    roles = {p["type"][0]["text"]: p for p in ended["participant"]}
    assert set(roles) == {"nurse", "gp"}  # the citizen's own seat never joined
    assert roles["gp"]["type"][0]["coding"][0]["code"] == "ATND"
    assert roles["nurse"]["type"][0]["coding"][0]["code"] == "PART"
    assert roles["gp"]["type"][0]["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
    )
    assert roles["nurse"]["period"]["end"] == "2025-02-10T08:13:20+00:00"
    assert roles["gp"]["individual"]["identifier"]["value"] == pseudonyms.participant(VISIT, GP)
    outcome = next(x for x in ended["extension"] if x["url"].endswith("visit-outcome"))
    assert outcome["valueCodeableConcept"]["coding"][0]["code"] == "admission-avoided"
    assert was_cancelled["status"] == "cancelled" and "participant" not in was_cancelled
    assert in_progress["status"] == "in-progress" and "end" not in in_progress["period"]

    [response] = resources(data, "QuestionnaireResponse")
    assert response["status"] == "completed"
    assert response["questionnaire"] == QUESTIONNAIRE_URL
    assert response["encounter"] == {"reference": f"Encounter/{visit}"}
    assert response["authored"] == "2025-02-10T08:16:40+00:00"
    assert response["item"] == [
        {"linkId": "q1", "answer": [{"valueInteger": 4}]},
        {"linkId": "q2", "answer": [{"valueInteger": 5}]},
    ]
    assert data["timestamp"] == "2025-02-11T08:00:00+00:00"


def test_fhir_bundle_of_nothing_validates() -> None:
    data = fhir_bundle([], Pseudonymizer(KEY))
    assert Bundle.model_validate(data).type == "collection"


def test_the_low_tail_of_bitrate_and_frame_rate_is_named_p5() -> None:
    """Quality lives in the low tail of bitrate and frame rate: its 5th percentile is called
    `p5`, never `p95` (which reads as the high tail)."""
    pseudonyms = Pseudonymizer(KEY)
    header = next(csv.reader(io.StringIO(visits_csv(summaries(), pseudonyms))))
    for name in ("bitrate_up_kbps", "bitrate_down_kbps", "fps_up"):
        assert f"{name}_p5" in header
        assert f"{name}_p95" not in header
    assert "rtt_ms_p95" in header
    [visit] = json.loads(visits_json(summaries(), pseudonyms))
    assert set(visit["quality"]["fps_up"]) == {"samples", "median", "p5", "worst"}
    assert set(visit["quality"]["jitter_ms"]) == {"samples", "median", "p95", "worst"}
