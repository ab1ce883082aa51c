"""FHIR R4 Appointment <-> the booking model (rooms.visit.Visit), both ways, and nothing else.

An Appointment is parsed in two steps: its datatypes by `fhir.resources` (the R4B models; their
Appointment is R4's), then the rules of this server. A visit holds no free text about the
citizen, so elements that carry it (description, comment, reasons, narrative, contained
resources) are refused rather than dropped, as the JSON API refuses unknown fields.
"""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pydantic
from fhir.resources.R4B.appointment import Appointment

from rooms.ids import ParticipantId, VisitId
from rooms.link_window import LinkWindow
from rooms.roles import PARTICIPANT_ROLES, Role
from rooms.visit import (
    DEFAULT_MAX_PARTICIPANTS,
    MAX_PARTICIPANTS,
    MAX_PLANNED_MINUTES,
    MIN_PARTICIPANTS,
    Visit,
    VisitKind,
    VisitState,
)
from server.auth import CPR_LIKE
from server.timeparse import parse_when
from server.visits import EARLIEST_TIME, LATEST_TIME, MAX_NAME

#: Where this server's extensions are defined (README, "FHIR"); named after the
#: `ehealth-videoappointment` profile's `ehealth-*` extensions they correspond to.
EXTENSION_BASE = "https://screenvisit.dk/fhir/StructureDefinition/"
EXT_KIND = EXTENSION_BASE + "screenvisit-visit-kind"
EXT_WAITING_ROOM = EXTENSION_BASE + "screenvisit-waiting-room"
EXT_MAX_PARTICIPANTS = EXTENSION_BASE + "screenvisit-max-participants"
EXT_MEETING_URL = EXTENSION_BASE + "screenvisit-meeting-url"
EXT_LINK_PERIOD = EXTENSION_BASE + "screenvisit-link-period"
EXT_PARTICIPANT_ID = EXTENSION_BASE + "screenvisit-participant-id"
ROLE_SYSTEM = "urn:screenvisit:role"

#: Actor resource types each role may be given as.
ACTOR_TYPES: dict[Role, frozenset[str]] = {
    Role.CITIZEN: frozenset({"Patient"}),
    Role.RELATIVE: frozenset({"RelatedPerson"}),
    Role.INTERPRETER: frozenset({"Practitioner", "RelatedPerson"}),
    Role.NURSE: frozenset({"Practitioner", "PractitionerRole"}),
    Role.GP: frozenset({"Practitioner", "PractitionerRole"}),
    Role.SPECIALIST: frozenset({"Practitioner", "PractitionerRole"}),
}
#: Elements that would hold free text or identities of the citizen: refused.
REFUSED_ELEMENTS = (
    "text",
    "contained",
    "description",
    "comment",
    "patientInstruction",
    "reasonCode",
    "reasonReference",
    "supportingInformation",
    "modifierExtension",
)
MAX_REFERENCE = 200

STATUS_OF: dict[VisitState, str] = {
    VisitState.SCHEDULED: "booked",
    VisitState.OPEN: "arrived",
    VisitState.IN_PROGRESS: "arrived",
    VisitState.ENDED: "fulfilled",
    VisitState.CANCELLED: "cancelled",
}


class FhirError(Exception):
    """An error answered as an OperationOutcome: HTTP status, issue code, text, and where."""

    def __init__(self, status: int, code: str, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.expression = expression


def invalid(message: str, expression: str | None = None) -> FhirError:
    """A resource that parses but breaks this server's rules: 422."""
    return FhirError(422, "business-rule", message, expression)


@dataclass(frozen=True)
class ParticipantRequest:
    role: Role
    display: str | None
    reference: str | None
    participant: ParticipantId | None = None


@dataclass(frozen=True)
class AppointmentRequest:
    status: str
    start: float
    minutes: int
    kind: VisitKind
    waiting_room: bool
    max_participants: int
    participants: list[ParticipantRequest] = field(default_factory=list)


def _path(loc: tuple[int | str, ...]) -> str:
    out = "Appointment"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_appointment(body: object) -> AppointmentRequest:
    """The booking an Appointment asks for, or FhirError (400 unreadable, 422 refused)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Appointment":
        raise FhirError(400, "structure", "the body must be a FHIR Appointment resource")
    try:
        Appointment.model_validate(body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if isinstance(p, int | str))
        raise FhirError(400, "structure", f"{_path(loc)}: {first['msg']}", _path(loc)) from None
    for element in REFUSED_ELEMENTS:
        if element in body:
            raise invalid(
                f"Appointment.{element} is not accepted: a visit holds no free text about the"
                " citizen (keep it in the EHR)",
                f"Appointment.{element}",
            )
    status = body.get("status")
    if status not in ("booked", "cancelled"):
        raise invalid("Appointment.status must be booked (or cancelled)", "Appointment.status")
    start, end = _instant(body, "start"), _instant(body, "end")
    minutes = math.ceil((end - start) / 60)
    if not 1 <= minutes <= MAX_PLANNED_MINUTES:
        raise invalid(
            f"Appointment.end must be after start, by at most {MAX_PLANNED_MINUTES} minutes",
            "Appointment.end",
        )
    extensions = _extensions(body.get("extension"), "Appointment")
    kind = _kind(extensions.get(EXT_KIND))
    waiting_room = _boolean(extensions.get(EXT_WAITING_ROOM), EXT_WAITING_ROOM, True)
    limit = _max_participants(extensions.get(EXT_MAX_PARTICIPANTS))
    raw = body.get("participant")
    if not isinstance(raw, list) or not raw:
        raise invalid(
            "Appointment.participant must list the visit's seats", "Appointment.participant"
        )
    if len(raw) > MAX_PARTICIPANTS:
        raise invalid(
            f"Appointment.participant may list at most {MAX_PARTICIPANTS}",
            "Appointment.participant",
        )
    participants = [_participant(entry, i) for i, entry in enumerate(raw)]
    return AppointmentRequest(status, start, minutes, kind, waiting_room, limit, participants)


def _instant(body: dict[str, Any], name: str) -> float:
    raw = body.get(name)
    if not isinstance(raw, str):
        raise invalid(f"Appointment.{name} is required", f"Appointment.{name}")
    try:
        # fhir.resources has checked the instant's form (a zone is part of it).
        seconds = parse_when(raw, time.time(), periods=False, zone_required=True)
    except ValueError:
        raise FhirError(400, "structure", f"Appointment.{name} is not an instant") from None
    if not EARLIEST_TIME <= seconds <= LATEST_TIME:
        raise invalid(f"Appointment.{name} must be between 2000 and 2100", f"Appointment.{name}")
    return seconds


def _extensions(raw: object, where: str) -> dict[str, dict[str, Any]]:
    """This server's extensions by URL; others are ignored (as FHIR allows), but an unknown one
    under this server's base URL is refused: it is a mistake, not someone else's data."""
    known = {EXT_KIND, EXT_WAITING_ROOM, EXT_MAX_PARTICIPANTS, EXT_MEETING_URL, EXT_LINK_PERIOD}
    known.add(EXT_PARTICIPANT_ID)
    out: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url.startswith(EXTENSION_BASE):
            continue
        if url not in known:
            raise invalid(f"unknown extension {url}", f"{where}.extension[{i}]")
        if url in out:
            raise invalid(f"extension {url} is given twice", f"{where}.extension[{i}]")
        out[url] = entry
    return out


def _kind(entry: dict[str, Any] | None) -> VisitKind:
    if entry is None:
        return VisitKind.CONSULTATION
    try:
        return VisitKind(str(entry.get("valueCode")))
    except ValueError:
        kinds = ", ".join(k.value for k in VisitKind)
        raise invalid(f"{EXT_KIND} takes a valueCode: {kinds}", "Appointment.extension") from None


def _boolean(entry: dict[str, Any] | None, url: str, default: bool) -> bool:
    if entry is None:
        return default
    value = entry.get("valueBoolean")
    if not isinstance(value, bool):
        raise invalid(f"{url} takes a valueBoolean", "Appointment.extension")
    return value


def _max_participants(entry: dict[str, Any] | None) -> int:
    if entry is None:
        return DEFAULT_MAX_PARTICIPANTS
    value = entry.get("valuePositiveInt")
    if isinstance(value, bool) or not isinstance(value, int):
        value = 0
    if not MIN_PARTICIPANTS <= value <= MAX_PARTICIPANTS:
        raise invalid(
            f"{EXT_MAX_PARTICIPANTS} takes a valuePositiveInt from {MIN_PARTICIPANTS} to"
            f" {MAX_PARTICIPANTS}",
            "Appointment.extension",
        )
    return value


def _participant(entry: dict[str, Any], i: int) -> ParticipantRequest:
    where = f"Appointment.participant[{i}]"
    roles = [
        coding.get("code")
        for concept in entry.get("type") or []
        for coding in concept.get("coding") or []
        if coding.get("system") == ROLE_SYSTEM
    ]
    names = ", ".join(sorted(r.value for r in PARTICIPANT_ROLES))
    if len(roles) != 1:
        raise invalid(
            f"{where}.type must hold one coding of {ROLE_SYSTEM} ({names})", f"{where}.type"
        )
    try:
        role = Role(roles[0])
    except ValueError:
        role = Role.ADMIN
    if role not in PARTICIPANT_ROLES:
        raise invalid(f"{where}.type: {roles[0]!r} is not one of {names}", f"{where}.type")
    actor = entry.get("actor") or {}
    if "identifier" in actor:
        raise invalid(
            f"{where}.actor.identifier is not kept (it may be a CPR number): give a reference",
            f"{where}.actor.identifier",
        )
    reference, display = actor.get("reference"), actor.get("display")
    if reference is not None:
        resource_type, _, ident = reference.rpartition("/")
        resource_type = resource_type.rpartition("/")[2]
        if resource_type not in ACTOR_TYPES[role]:
            wanted = " or ".join(sorted(ACTOR_TYPES[role]))
            raise invalid(
                f"{where}.actor: a {role.value} is a {wanted}", f"{where}.actor.reference"
            )
        if not ident or CPR_LIKE.match(ident) or len(reference) > MAX_REFERENCE:
            raise invalid(
                f"{where}.actor.reference must be a short resource reference, not a CPR number",
                f"{where}.actor.reference",
            )
    if display is not None and len(display) > MAX_NAME:
        raise invalid(
            f"{where}.actor.display: at most {MAX_NAME} characters", f"{where}.actor.display"
        )
    own = _extensions(entry.get("extension"), where).get(EXT_PARTICIPANT_ID)
    seat = own.get("valueString") if own is not None else None
    return ParticipantRequest(
        role, display, reference, ParticipantId(seat) if isinstance(seat, str) else None
    )


def _instant_text(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _last_updated(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def resource_id(visit: VisitId) -> str:
    """The Appointment's id: the visit's, with `_` (which a FHIR id may not hold) as `.` (which
    a visit id never holds)."""
    return visit.replace("_", ".")


def visit_id_of(resource: str) -> str:
    return resource.replace(".", "_")


def version_of(visit: Visit) -> str:
    """The resource's versionId: every stored change of the visit makes a new version."""
    return str(visit.revision + 1)


def render_appointment(
    visit: Visit,
    refs: dict[ParticipantId, str],
    links: dict[ParticipantId, str] | None,
    window: LinkWindow,
) -> dict[str, Any]:
    """The Appointment of `visit`: `refs` are the seats' actor references, `links` their join
    links (None: not shown to this reader). A finished visit shows no names or references."""
    finished = visit.state in (VisitState.ENDED, VisitState.CANCELLED)
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": resource_id(visit.id),
        "meta": {"versionId": version_of(visit), "lastUpdated": _last_updated(visit.updated_at)},
        "extension": [
            {"url": EXT_KIND, "valueCode": visit.kind.value},
            {"url": EXT_WAITING_ROOM, "valueBoolean": visit.waiting_room},
            {"url": EXT_MAX_PARTICIPANTS, "valuePositiveInt": visit.max_participants},
        ],
        "status": STATUS_OF[visit.state],
    }
    if visit.planned_start is not None:
        resource["start"] = _instant_text(visit.planned_start)
        resource["end"] = _instant_text(visit.planned_start + visit.planned_minutes * 60)
    resource["minutesDuration"] = visit.planned_minutes
    resource["created"] = _instant_text(visit.created_at)
    opens, closes = window.opens_at(visit), window.closes_at(visit)
    participants = []
    for seat in visit.seats.values():
        extensions: list[dict[str, Any]] = [
            {"url": EXT_PARTICIPANT_ID, "valueString": seat.participant}
        ]
        if links is not None and not finished and seat.participant in links:
            extensions.append({"url": EXT_MEETING_URL, "valueUrl": links[seat.participant]})
            if opens is not None and closes is not None:
                period = {"start": _instant_text(opens), "end": _instant_text(closes)}
                extensions.append({"url": EXT_LINK_PERIOD, "valuePeriod": period})
        entry: dict[str, Any] = {
            "extension": extensions,
            "type": [{"coding": [{"system": ROLE_SYSTEM, "code": seat.role.value}]}],
            "status": "accepted",
        }
        actor: dict[str, str] = {}
        if not finished and seat.participant in refs:
            actor["reference"] = refs[seat.participant]
        if not finished and seat.name:
            actor["display"] = seat.name
        if actor:
            entry["actor"] = actor
        participants.append(entry)
    resource["participant"] = participants
    return resource
