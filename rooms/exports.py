"""Evaluation exports: CSV, JSON and a FHIR R4 Bundle, all pseudonymous.

Every export is built from `VisitSummary` values (rooms/evaluation.py) and a `Pseudonymizer`,
field by field from a fixed list, so nothing else can slip in:

- Visit and participant ids are replaced by keyed pseudonyms (HMAC-SHA256 under the deployment's
  export key): a visit by `v` + 16 hex digits of HMAC(visit), a participant by `p` + 16 hex
  digits of HMAC(visit "|" participant). The same key gives the same pseudonyms in every export,
  so exports can be joined; without the key they cannot be traced back to a visit link or to a
  token's `sub` (which for invite links is the participant id).
- Codes only: kind, organisation, role, sector, outcome, failure reasons, end reason. A value
  that does not look like a code (`CODE_PATTERN`: a letter or digit, then up to 63 letters,
  digits, `.`, `_`, `:` or `-`; so no spaces) is exported as `unrecognised`, so free text put
  where a code belongs never leaves.
- Never exported: names, tokens, addresses, CPR numbers, chat, the outcome's note (no summary
  carries them).
- Times are UTC in ISO 8601 (`2025-02-10T09:00:00+00:00`); durations in seconds.

FHIR (R4, 4.0.1): a Bundle of type `collection` with one `Encounter` per visit and one
`QuestionnaireResponse` per survey answer. The Encounter has the visit pseudonym as id and
identifier, status `finished` (ended), `cancelled`, `in-progress` (live, someone joined) or
`planned` (live, nobody yet), class `VR` (virtual) from v3-ActCode, the visit kind as `type`,
the period from the first join to the end, `length` in minutes, one `participant` per seat that
joined (type `ATND` from v3-ParticipationType for the hosting gp or specialist, `PART`
otherwise, with the role as text; the period from first join to last leave; `individual` a
logical reference by the participant pseudonym, never a name), the organisation as a logical
`serviceProvider` reference, and extensions for the outcome code, technical failure and phone
fallback. The QuestionnaireResponse is `completed`, answers `QUESTIONNAIRE_URL`, refers to
`Encounter/<visit pseudonym>` and holds items q1..q3 (valueInteger) for the questions answered.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from rooms.evaluation import (
    LOWER_IS_WORSE,
    NO_MEDIA_LEVEL,
    NO_MEDIA_SAMPLES,
    NO_SAMPLES,
    QUALITY_METRICS,
    SURVEY_QUESTIONS,
    ParticipantSummary,
    SampleFacts,
    VisitSummary,
    sample_facts,
    summarize,
    summarize_without_samples,
)
from rooms.eventlog import EventLog, VisitEvent
from rooms.ids import VisitId
from rooms.quality_log import (
    OutcomeStore,
    QualityRecord,
    SqlQualityLog,
    SurveyRecord,
    SurveyStore,
)

CODE_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
UNRECOGNISED: Final = "unrecognised"
MIN_KEY_BYTES: Final = 16

FHIR_BASE: Final = "https://screenvisit.dk/fhir"
QUESTIONNAIRE_URL: Final = f"{FHIR_BASE}/Questionnaire/citizen-experience"
VISIT_IDENTIFIER_SYSTEM: Final = f"{FHIR_BASE}/NamingSystem/visit-pseudonym"
PARTICIPANT_IDENTIFIER_SYSTEM: Final = f"{FHIR_BASE}/NamingSystem/participant-pseudonym"
ORG_IDENTIFIER_SYSTEM: Final = f"{FHIR_BASE}/NamingSystem/organisation"
VISIT_KIND_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/visit-kind"
OUTCOME_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/visit-outcome"
EXTENSION_OUTCOME: Final = f"{FHIR_BASE}/StructureDefinition/visit-outcome"
EXTENSION_TECHNICAL_FAILURE: Final = f"{FHIR_BASE}/StructureDefinition/technical-failure"
EXTENSION_FELL_BACK: Final = f"{FHIR_BASE}/StructureDefinition/fell-back-to-phone"
ACT_CODE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
UCUM: Final = "http://unitsofmeasure.org"
#: Roles that attend (ATND) as the visit's responsible clinician; everyone else participates.
ATTENDER_ROLES: Final = frozenset({"gp", "specialist"})

ENCOUNTER_STATUS: Final = {"ended": "finished", "cancelled": "cancelled"}


class Pseudonymizer:
    """Stable, keyed pseudonyms for visit and participant ids (HMAC-SHA256)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def _digest(self, text: str) -> str:
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    def visit(self, visit: str) -> str:
        return "v" + self._digest(visit)

    def participant(self, visit: str, participant: str) -> str:
        return "p" + self._digest(f"{visit}|{participant}")


def code(value: str | None) -> str | None:
    """`value` when it looks like a code, else `unrecognised` (None stays None)."""
    if value is None:
        return None
    return value if CODE_PATTERN.fullmatch(value) else UNRECOGNISED


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _round(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None


# --- JSON -------------------------------------------------------------------------------------


def _participant_object(
    s: VisitSummary, p: ParticipantSummary, pseudonyms: Pseudonymizer
) -> dict[str, Any]:
    return {
        "participant": pseudonyms.participant(s.visit, p.participant),
        "role": code(p.role),
        "sector": code(p.sector),
        "invited": p.invited,
        "joined": p.joined,
        "first_joined_at": iso(p.first_joined_at),
        "last_left_at": iso(p.last_left_at),
        "waiting_seconds": _round(p.waiting_seconds, 1),
        "seconds_in_call": _round(p.seconds_in_call, 1),
        "reconnects": p.reconnects,
        "removed": p.removed,
    }


def visit_object(s: VisitSummary, pseudonyms: Pseudonymizer) -> dict[str, Any]:
    """One visit as a JSON-ready dict."""
    experience = s.experience
    return {
        "visit": pseudonyms.visit(s.visit),
        "kind": code(s.kind),
        "org": code(s.org),
        "state": code(s.state),
        "end_reason": code(s.end_reason),
        "week": s.week,
        "created_at": iso(s.created_at),
        "planned_start": iso(s.planned_start),
        "started_at": iso(s.started_at),
        "ended_at": iso(s.ended_at),
        "duration_seconds": _round(s.duration_seconds, 1),
        "sectors_present": [code(x) for x in s.sectors_present],
        "assisted": s.assisted,
        "no_shows": [code(x) for x in s.no_shows],
        "fell_back_to_phone": s.fell_back_to_phone,
        "technical_failure": s.technical_failure,
        "failure_reasons": [code(x) for x in s.failure_reasons],
        "content_shared": [
            {"role": code(c.role), "source": code(c.source), "times": c.times, "seconds": c.seconds}
            for c in s.content_shared
        ],
        "outcome": code(s.outcome),
        "experience": None
        if experience is None
        else {
            "q1": experience.q1,
            "q2": experience.q2,
            "q3": experience.q3,
            "mean": _round(experience.mean),
        },
        "quality": {
            "samples": s.quality.samples,
            "levels": {code(k): v for k, v in s.quality.levels.items()},
            **{
                name: {
                    "samples": m.samples,
                    "median": _round(m.median, 4),
                    tail_name(name): _round(m.p95, 4),
                    "worst": _round(m.worst, 4),
                }
                for name, m in s.quality.metrics.items()
            },
        },
        "participants": [_participant_object(s, p, pseudonyms) for p in s.participants],
    }


def visits_json(summaries: Sequence[VisitSummary], pseudonyms: Pseudonymizer) -> str:
    """A JSON list of visit objects."""
    return json.dumps(
        [visit_object(s, pseudonyms) for s in summaries], ensure_ascii=False, indent=1
    )


# --- CSV --------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(_cell(v) for v in value)
    return str(value)


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def tail_name(metric: str) -> str:
    """The name of a quality measure's bad tail: `p5` where lower is worse (bitrate, frame
    rate), else `p95`."""
    return "p5" if metric in LOWER_IS_WORSE else "p95"


def _quality_stats(metric: str) -> tuple[str, str, str]:
    return ("median", tail_name(metric), "worst")


VISIT_COLUMNS: Final = (
    "visit",
    "kind",
    "org",
    "state",
    "end_reason",
    "week",
    "created_at",
    "planned_start",
    "started_at",
    "ended_at",
    "duration_seconds",
    "participants_invited",
    "participants_joined",
    "sectors_present",
    "assisted",
    "no_shows",
    "fell_back_to_phone",
    "technical_failure",
    "failure_reasons",
    "outcome",
    "experience_q1",
    "experience_q2",
    "experience_q3",
    "experience_mean",
    "quality_samples",
    *(f"{name}_{stat}" for name in QUALITY_METRICS for stat in _quality_stats(name)),
)


def visits_csv(summaries: Sequence[VisitSummary], pseudonyms: Pseudonymizer) -> str:
    """One row per visit (lists joined by `;`, empty for none)."""
    rows = []
    for s in summaries:
        o = visit_object(s, pseudonyms)
        experience = o["experience"] or {}
        quality = o["quality"]
        rows.append(
            [
                *(o[c] for c in VISIT_COLUMNS[:11]),
                sum(1 for p in s.participants if p.invited),
                sum(1 for p in s.participants if p.joined),
                *(o[c] for c in VISIT_COLUMNS[13:20]),
                *(experience.get(q) for q in (*SURVEY_QUESTIONS, "mean")),
                quality["samples"],
                *(quality[name][stat] for name in QUALITY_METRICS for stat in _quality_stats(name)),
            ]
        )
    return _csv(VISIT_COLUMNS, rows)


PARTICIPANT_COLUMNS: Final = (
    "visit",
    "participant",
    "role",
    "sector",
    "invited",
    "joined",
    "first_joined_at",
    "last_left_at",
    "waiting_seconds",
    "seconds_in_call",
    "reconnects",
    "removed",
)


def participants_csv(summaries: Sequence[VisitSummary], pseudonyms: Pseudonymizer) -> str:
    """One row per participant of each visit."""
    rows = []
    for s in summaries:
        visit = pseudonyms.visit(s.visit)
        for p in s.participants:
            o = _participant_object(s, p, pseudonyms)
            rows.append([visit, *(o[c] for c in PARTICIPANT_COLUMNS[1:])])
    return _csv(PARTICIPANT_COLUMNS, rows)


# --- FHIR R4 ----------------------------------------------------------------------------------


def _period(start: float | None, end: float | None) -> dict[str, str] | None:
    period = {k: v for k, v in (("start", iso(start)), ("end", iso(end))) if v is not None}
    return period or None


def _encounter_status(s: VisitSummary) -> str:
    if s.state in ENCOUNTER_STATUS:
        return ENCOUNTER_STATUS[s.state]
    return "in-progress" if s.started_at is not None else "planned"


def _encounter_participant(
    s: VisitSummary, p: ParticipantSummary, pseudonyms: Pseudonymizer
) -> dict[str, Any]:
    role = code(p.role) or "unknown"
    participation = "ATND" if role in ATTENDER_ROLES else "PART"
    display = "attender" if participation == "ATND" else "participation"
    entry: dict[str, Any] = {
        "type": [
            {
                "coding": [
                    {"system": PARTICIPATION_TYPE_SYSTEM, "code": participation, "display": display}
                ],
                "text": role,
            }
        ],
        "individual": {
            "identifier": {
                "system": PARTICIPANT_IDENTIFIER_SYSTEM,
                "value": pseudonyms.participant(s.visit, p.participant),
            }
        },
    }
    period = _period(p.first_joined_at, p.last_left_at)
    if period:
        entry["period"] = period
    return entry


def encounter(s: VisitSummary, pseudonyms: Pseudonymizer) -> dict[str, Any]:
    """The FHIR R4 Encounter of one visit, as JSON."""
    visit = pseudonyms.visit(s.visit)
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": visit,
        "identifier": [{"system": VISIT_IDENTIFIER_SYSTEM, "value": visit}],
        "status": _encounter_status(s),
        "class": {"system": ACT_CODE_SYSTEM, "code": "VR", "display": "virtual"},
    }
    kind = code(s.kind)
    if kind:
        resource["type"] = [{"coding": [{"system": VISIT_KIND_SYSTEM, "code": kind}], "text": kind}]
    participants = [_encounter_participant(s, p, pseudonyms) for p in s.participants if p.joined]
    if participants:
        resource["participant"] = participants
    period = _period(s.started_at, s.ended_at if s.started_at is not None else None)
    if period:
        resource["period"] = period
    if s.duration_seconds is not None:
        minutes = round(s.duration_seconds / 60, 2)
        resource["length"] = {"value": minutes, "unit": "min", "system": UCUM, "code": "min"}
    org = code(s.org)
    if org:
        resource["serviceProvider"] = {
            "identifier": {"system": ORG_IDENTIFIER_SYSTEM, "value": org}
        }
    extensions: list[dict[str, Any]] = []
    outcome = code(s.outcome)
    if outcome:
        extensions.append(
            {
                "url": EXTENSION_OUTCOME,
                "valueCodeableConcept": {"coding": [{"system": OUTCOME_SYSTEM, "code": outcome}]},
            }
        )
    extensions.append({"url": EXTENSION_TECHNICAL_FAILURE, "valueBoolean": s.technical_failure})
    extensions.append({"url": EXTENSION_FELL_BACK, "valueBoolean": s.fell_back_to_phone})
    resource["extension"] = extensions
    return resource


def questionnaire_responses(s: VisitSummary, pseudonyms: Pseudonymizer) -> list[dict[str, Any]]:
    """One FHIR R4 QuestionnaireResponse per survey answer of the visit, as JSON."""
    visit = pseudonyms.visit(s.visit)
    responses = []
    for n, answer in enumerate(s.surveys, start=1):
        participant = pseudonyms.participant(s.visit, answer.participant)
        items = [
            {"linkId": question, "answer": [{"valueInteger": value}]}
            for question, value in zip(
                SURVEY_QUESTIONS, (answer.q1, answer.q2, answer.q3), strict=True
            )
            if value is not None
        ]
        response: dict[str, Any] = {
            "resourceType": "QuestionnaireResponse",
            "id": f"{visit}-{participant}-{n}",
            "questionnaire": QUESTIONNAIRE_URL,
            "status": "completed",
            "encounter": {"reference": f"Encounter/{visit}"},
            "authored": iso(answer.time),
        }
        if items:
            response["item"] = items
        responses.append(response)
    return responses


def fhir_bundle(
    summaries: Sequence[VisitSummary],
    pseudonyms: Pseudonymizer,
    generated_at: float | None = None,
) -> dict[str, Any]:
    """A FHIR R4 Bundle (collection) of every visit's Encounter and QuestionnaireResponses."""
    entries: list[dict[str, Any]] = []
    for s in summaries:
        resources = [encounter(s, pseudonyms), *questionnaire_responses(s, pseudonyms)]
        entries += (
            {"fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    if generated_at is not None:
        bundle["timestamp"] = iso(generated_at)
    return bundle


def fhir_json(
    summaries: Sequence[VisitSummary],
    pseudonyms: Pseudonymizer,
    generated_at: float | None = None,
) -> str:
    return json.dumps(fhir_bundle(summaries, pseudonyms, generated_at), ensure_ascii=False)


# --- gathering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Records:
    """Everything recorded about some visits, as read (see `read_records`). With `facts`, the
    samples were not read one by one: only their facts."""

    visits: Sequence[str]
    events: dict[VisitId, list[VisitEvent]]
    samples: dict[str, list[QualityRecord]]
    outcomes: dict[str, tuple[str, float]]
    answers: dict[str, list[SurveyRecord]]
    facts: dict[str, SampleFacts] | None = None


async def read_records(
    visits: Sequence[str],
    events: EventLog,
    quality: SqlQualityLog,
    outcomes: OutcomeStore,
    surveys: SurveyStore,
    *,
    samples: bool = True,
) -> Records:
    """Read everything recorded about `visits` (the one I/O step); without `samples` (what the
    report needs), the quality samples as their facts only (`read_sample_facts`)."""
    by_visit: dict[str, list[QualityRecord]] = defaultdict(list)
    facts = None
    if samples:
        for sample in await quality.for_visits(visits):
            by_visit[sample.visit].append(sample)
    else:
        facts = await read_sample_facts(visits, quality)
    answers: dict[str, list[SurveyRecord]] = defaultdict(list)
    for answer in await surveys.for_visits(visits):
        answers[answer.visit].append(answer)
    recorded = await outcomes.for_visits(visits)
    events_by_visit = await events.for_visits([VisitId(v) for v in visits])
    return Records(visits, events_by_visit, by_visit, recorded, answers, facts)


async def read_sample_facts(
    visits: Sequence[str], quality: SqlQualityLog
) -> dict[str, SampleFacts]:
    """The `SampleFacts` of each of `visits` that has samples, from one aggregated row per
    participant; only the visits where a participant has `NO_MEDIA_SAMPLES` samples lacking
    media (rule (c) may hold: it needs that many in a row) have their samples read."""
    latest: dict[str, float] = {}
    maybe: set[str] = set()
    for visit, _participant, last, lacking in await quality.latest_and_lacking(
        visits, NO_MEDIA_LEVEL
    ):
        latest[visit] = max(last, latest.get(visit, last))
        if lacking >= NO_MEDIA_SAMPLES:
            maybe.add(visit)
    samples: dict[str, list[QualityRecord]] = defaultdict(list)
    for sample in await quality.for_visits(sorted(maybe)):
        samples[sample.visit].append(sample)
    facts = {visit: SampleFacts(last, False) for visit, last in latest.items()}
    for visit in maybe:
        # for_visits gives them in time order, as summarize sorts them.
        facts[visit] = sample_facts(samples[visit])
    return facts


def summarize_records(records: Records) -> list[VisitSummary]:
    """Summarize each visit read (pure CPU: servers run it in a worker thread)."""
    summaries = []
    facts = records.facts
    for visit in records.visits:
        outcome = records.outcomes.get(visit)
        code = outcome[0] if outcome else None
        visit_events = records.events.get(VisitId(visit), [])
        answers = records.answers.get(visit, [])
        if facts is None:
            summary = summarize(visit, visit_events, records.samples.get(visit, []), code, answers)
        else:
            visit_facts = facts.get(visit, NO_SAMPLES)
            summary = summarize_without_samples(visit, visit_events, visit_facts, code, answers)
        summaries.append(summary)
    return summaries


async def collect_summaries(
    visits: Sequence[str],
    events: EventLog,
    quality: SqlQualityLog,
    outcomes: OutcomeStore,
    surveys: SurveyStore,
) -> list[VisitSummary]:
    """Read everything recorded about `visits` and summarize each."""
    return summarize_records(await read_records(visits, events, quality, outcomes, surveys))
