"""The HTTP API's bodies, queries and answers as pydantic models: the server validates with
them and `server.openapi` writes the OpenAPI document from them."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictStr,
    WithJsonSchema,
)

from rooms.outcomes import MAX_NOTE_CHARS
from rooms.roles import PARTICIPANT_ROLES, Role, Sector
from rooms.visit import (
    DEFAULT_MAX_PARTICIPANTS,
    DEFAULT_PLANNED_MINUTES,
    MAX_PARTICIPANTS,
    MAX_PLANNED_MINUTES,
    MIN_PARTICIPANTS,
    REQUIRED_ROLES,
    VisitKind,
    VisitState,
)
from server.timeparse import parse_when
from server.visits import EARLIEST_TIME, LATEST_TIME, MAX_NAME

MAX_AUDIT_LIMIT = 10_000
MAX_QUERY_TEXT = 200
MAX_JTI = 200

#: Month and day of a calendar date (29 February is left out: then the pattern never lies).
_MONTH_DAY = (
    r"((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
)
_DATE = rf"[0-9]{{4}}-{_MONTH_DAY}"
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
_ZONE = r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
#: An ISO 8601 time with a timezone, 2000 to 2099 (what a booking takes).
ZONED_TIME = rf"^20[0-9]{{2}}-{_MONTH_DAY}T{_CLOCK}{_ZONE}$"
#: What a time filter takes: a Unix time, a period back from now, an ISO date or time (UTC
#: when it names no zone).
TIME_FILTER = rf"^([0-9]{{1,12}}(\.[0-9]{{1,9}})?|[0-9]{{1,6}}[mhdw]|{_DATE}(T{_CLOCK}{_ZONE}?)?)$"
#: Text without control characters.
PLAIN_TEXT = r"^[^\u0000-\u001f\u007f-\u009f]*$"
SEAT_ROLE_SCHEMA = {"type": "string", "enum": sorted(r.value for r in PARTICIPANT_ROLES)}


_ZONED = re.compile(ZONED_TIME)
_FILTER = re.compile(TIME_FILTER)


def _body_time(value: object) -> object:
    """A Unix time as it is, an ISO 8601 time with a timezone as a Unix time."""
    if isinstance(value, str):
        if not _ZONED.fullmatch(value):
            raise ValueError("must be a Unix time or an ISO 8601 time with a timezone")
        return parse_when(value, time.time(), periods=False, zone_required=True)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a Unix time or an ISO 8601 time with a timezone")
    return value


def _filter_time(value: object) -> float:
    if not isinstance(value, str) or not _FILTER.fullmatch(value):
        raise ValueError("must be a Unix time, an ISO date or time, or a period (7d)")
    return parse_when(value, time.time())


def _whole(value: object) -> object:
    """An integer as JSON Schema means it (8 and 8.0 alike); a boolean or text is none."""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a whole number")
    return value


def _takes_part(role: Role) -> Role:
    if role not in PARTICIPANT_ROLES:
        raise ValueError(f"{role.value} does not take part")
    return role


class Request(BaseModel):
    """A request body: nothing beyond its fields (a visit holds no free text about the citizen,
    so such a field is refused rather than dropped)."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A time in a body: a Unix time, or an ISO 8601 time with a timezone; 2000 to 2100.
BodyTime = Annotated[
    float,
    Field(ge=EARLIEST_TIME, le=LATEST_TIME),
    BeforeValidator(_body_time),
    WithJsonSchema(
        {
            "description": "Unix time (seconds), or an ISO 8601 time with a timezone;"
            " 2000 to 2100.",
            "anyOf": [
                {"type": "number", "minimum": EARLIEST_TIME, "maximum": LATEST_TIME},
                {"type": "string", "pattern": ZONED_TIME},
            ],
        }
    ),
]
#: A time filter in a query, as the CLI takes them too (`server.timeparse`).
FilterTime = Annotated[
    float,
    BeforeValidator(_filter_time),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TIME_FILTER,
            "description": "Unix time, an ISO date or time (UTC when it names no zone), or a"
            " period back from now (30m, 12h, 7d, 2w).",
        }
    ),
]
SeatRole = Annotated[
    Role,
    AfterValidator(_takes_part),
    WithJsonSchema(SEAT_ROLE_SCHEMA),
]
PlannedMinutes = Annotated[int, Field(ge=1, le=MAX_PLANNED_MINUTES), BeforeValidator(_whole)]
MaxParticipants = Annotated[
    int, Field(ge=MIN_PARTICIPANTS, le=MAX_PARTICIPANTS), BeforeValidator(_whole)
]


# --- requests -----------------------------------------------------------------------------------


class ParticipantRequest(Request):
    role: SeatRole
    name: Annotated[StrictStr, Field(max_length=MAX_NAME)] | None = Field(
        default=None, description="Display name on the tiles; never logged."
    )
    sector: Sector | None = None


def _needs_roles() -> dict[str, Any]:
    """A conference needs a gp and a specialist: written into the schema, so that no valid
    booking is refused."""
    rules = [
        {
            "if": {"properties": {"kind": {"const": kind.value}}, "required": ["kind"]},
            "then": {
                "properties": {
                    "participants": {
                        "allOf": [
                            {"contains": {"properties": {"role": {"const": role.value}}}}
                            for role in sorted(roles)
                        ]
                    }
                }
            },
        }
        for kind, roles in REQUIRED_ROLES.items()
    ]
    return {"allOf": rules}


class VisitCreate(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_needs_roles())
    kind: VisitKind = VisitKind.CONSULTATION
    participants: list[ParticipantRequest] = Field(
        min_length=1,
        max_length=MAX_PARTICIPANTS,
        description="One seat each; no more than max_participants (else 409 visit-full)."
        " A conference needs a gp and a specialist.",
    )
    planned_start: BodyTime | None = None
    planned_minutes: PlannedMinutes = DEFAULT_PLANNED_MINUTES
    waiting_room: StrictBool = Field(
        default=True, description="Whether participants other than the host wait to be let in."
    )
    max_participants: MaxParticipants = DEFAULT_MAX_PARTICIPANTS


class VisitPatch(Request):
    """The fields to change (at least one). A null `planned_start` unplans the visit; any
    other null leaves its field as it is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    kind: VisitKind | None = None
    planned_start: BodyTime | None = None
    planned_minutes: PlannedMinutes | None = None
    waiting_room: StrictBool | None = None
    max_participants: MaxParticipants | None = None


class OutcomeRequest(Request):
    outcome: StrictStr
    note: Annotated[StrictStr, Field(max_length=MAX_NOTE_CHARS)] | None = None


SurveyAnswer = Annotated[int, Field(ge=1, le=5), BeforeValidator(_whole)]


class SurveyRequest(Request):
    q1: SurveyAnswer | None = None
    q2: SurveyAnswer | None = None
    q3: SurveyAnswer | None = None


#: The longest join time a page may report: an hour (longer is a page left open, not a join).
MAX_JOIN_SECONDS = 3600.0


class JoinTimeReport(Request):
    """The join page's time from opening the link to the first remote frame (for metrics)."""

    seconds: Annotated[StrictFloat, Field(ge=0, le=MAX_JOIN_SECONDS, allow_inf_nan=False)]


class RevocationRequest(Request):
    jti: Annotated[StrictStr, Field(min_length=1, max_length=MAX_JTI, pattern=PLAIN_TEXT)]
    expires_at: Annotated[StrictFloat, Field(ge=0, le=LATEST_TIME)] | None = Field(
        default=None,
        description="Unix time after which the revocation may be forgotten (default: the"
        " longest any token can live from now).",
    )


# --- queries ------------------------------------------------------------------------------------


class VisitListQuery(Query):
    state: VisitState | None = Field(default=None, description="Only visits in this state.")
    from_: FilterTime | None = Field(
        default=None, alias="from", description="Only visits planned to start at or after this."
    )
    to: FilterTime | None = Field(
        default=None, description="Only visits planned to start at or before this."
    )


#: The connection test's largest payload: half a megabyte takes 4 s at 1 Mbit/s, a call's rate.
CONNECTION_TEST_MAX_BYTES = 512 * 1024


class ConnectionTestQuery(Query):
    bytes: int = Field(
        default=0,
        ge=0,
        le=CONNECTION_TEST_MAX_BYTES,
        description="How many bytes to send back (they do not compress).",
    )


class EvaluationQuery(Query):
    from_: FilterTime | None = Field(default=None, alias="from")
    to: FilterTime | None = None
    kind: VisitKind | None = None
    sector: Sector | None = None


class ExportQuery(EvaluationQuery):
    format: Literal["csv", "participants-csv", "json", "fhir"] = "csv"


QueryText = Annotated[StrictStr, Field(max_length=MAX_QUERY_TEXT, pattern=PLAIN_TEXT)]


class AuditQuery(Query):
    visit: QueryText | None = None
    subject: QueryText | None = None
    since: FilterTime | None = None
    until: FilterTime | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_AUDIT_LIMIT)] = 1000


# --- answers ------------------------------------------------------------------------------------


class JsonDocument(RootModel[dict[str, Any]]):
    """A JSON document (this API's OpenAPI or AsyncAPI description)."""


class ErrorDetail(Answer):
    code: str = Field(
        description="Stable and machine-readable, e.g. invalid-field, visit-full,"
        " invalid-transition, token-expired, forbidden."
    )
    message: str
    field: str | None = Field(
        default=None, description="With invalid-field: the field it is about."
    )
    current: VisitState | None = Field(
        default=None, description="With invalid-transition: the visit's state."
    )


class ErrorBody(Answer):
    """Every refusal: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class SeatOut(Answer):
    participant: str
    role: str
    sector: Sector
    name: str | None


class Booking(Answer):
    kind: VisitKind
    org: str
    created_at: float
    updated_at: float
    planned_start: float | None = Field(
        description="Unix time the visit is planned to start, or null."
    )
    planned_minutes: int = Field(ge=1, le=MAX_PLANNED_MINUTES)
    waiting_room: bool
    max_participants: int = Field(ge=MIN_PARTICIPANTS, le=MAX_PARTICIPANTS)


class VisitOut(Booking):
    id: str
    state: VisitState
    revision: int = Field(ge=0, description="Counts the recorded changes of the visit.")
    fence: int = Field(
        ge=0, description="The highest lease epoch that has written the visit (fencing)."
    )
    seats: list[SeatOut]
    removed: list[str] = Field(
        description="Participants the host removed; they stay out until readmitted."
    )
    declined: dict[str, float] = Field(
        description="Unix time each participant was last declined in the waiting room."
    )
    connected: list[str] | None = Field(
        default=None,
        description="GET /api/visits/{visit} only: participants connected now.",
        exclude_if=lambda v: v is None,
    )


class VisitList(Answer):
    visits: list[VisitOut]


class Link(Answer):
    participant: str
    role: Annotated[str, WithJsonSchema(SEAT_ROLE_SCHEMA)]
    url: str = Field(description="The join page; the invite token is in the URL fragment.")


class VisitLinks(Answer):
    visit: str
    state: VisitState
    links: dict[str, str] = Field(
        description="The first link of each role; further seats of a role are keyed role-2,"
        " role-3, ..."
    )
    participants: list[Link]


class VisitCreated(VisitLinks, Booking):
    pass


class VisitStateChange(Answer):
    visit: str
    state: VisitState


class OutcomeRecorded(Answer):
    visit: str
    outcome: str


class SurveyRecorded(Answer):
    visit: str
    answers: dict[str, int | None]


class LinkCheck(Answer):
    visit: str
    state: VisitState
    kind: VisitKind
    role: str
    planned_start: float | None
    #: The link's opening hours (None for a visit planned for no time), and where now is in
    #: them: before, open or after.
    opens_at: float | None
    closes_at: float | None
    window: Literal["before", "open", "after"]
    now: float
    #: The STUN/TURN servers, for the pre-call connection test's UDP reachability.
    ice_servers: list[dict[str, Any]]


class EvaluationReport(Answer):
    org: str
    visits: int = Field(ge=0)
    report: dict[str, Any]


class Revocation(Answer):
    jti: str
    closed_sessions: int = Field(ge=0)


class Drain(Answer):
    node: str
    draining: bool
    visits: int = Field(ge=0)


class AuditRecordOut(Answer):
    time: float
    action: str
    result: Literal["allowed", "refused"]
    reason: str | None = None
    subject: str | None = None
    issuer: str | None = None
    sector: str | None = None
    org: str | None = None
    role: str | None = None
    visit: str | None = None
    client: str | None = None
    token: str | None = None
    count: int = Field(
        default=1,
        ge=1,
        description="How many decisions the record stands for: repeated refusals from one"
        " address with one reason in one minute share one record; `time` is the first.",
    )
    uid: str = Field(description="Unique per record.")


class AuditRecords(Answer):
    records: list[AuditRecordOut]


class Health(Answer):
    status: Literal["ok", "degraded", "draining"]
    reasons: list[str] = Field(
        description="Why the status is degraded: database-unreachable, outbox-pending: N."
    )
    node: str
    visits: int = Field(ge=0)
    participants: int = Field(ge=0)
    media: dict[str, int]
    tasks: int = Field(ge=0, description="Every asyncio task alive in this process.")
