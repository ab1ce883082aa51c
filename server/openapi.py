"""The HTTP API described as OpenAPI 3.0, served at GET /api/openapi.json.

Written by hand as data (no runtime dependency); tests/test_openapi.py checks it is valid
OpenAPI 3 and runs schemathesis against a real server to check the server keeps to it.
"""

from __future__ import annotations

from typing import Any

from rooms.ids import VISIT_ID_PATTERN
from rooms.roles import PARTICIPANT_ROLES, Sector
from rooms.visit import (
    DEFAULT_MAX_PARTICIPANTS,
    DEFAULT_PLANNED_MINUTES,
    MAX_PARTICIPANTS,
    MAX_PLANNED_MINUTES,
    MIN_PARTICIPANTS,
    VisitKind,
    VisitState,
)
from server.visits import EARLIEST_TIME, LATEST_TIME, MAX_NAME

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        429: "TooManyRequests",
    }
    return {str(s): {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


_TIME_INPUT: Schema = {
    "description": "Unix time (seconds), or an ISO 8601 time with a timezone;"
    " between 2000 and 2100.",
    "oneOf": [
        {"type": "number", "minimum": EARLIEST_TIME, "maximum": LATEST_TIME},
        {"type": "string", "format": "date-time", "maxLength": 64},
    ],
}

_VISIT_PARAMETER: Schema = {
    "name": "visit",
    "in": "path",
    "required": True,
    "description": "The visit id.",
    "schema": {"type": "string", "pattern": f"^{VISIT_ID_PATTERN}$"},
    "example": "v-Wj075zlDPMn9",
}

_FROM_VISIT = {"visit": "$response.body#/visit"}


def _schemas() -> dict[str, Schema]:
    seat_roles = sorted(r.value for r in PARTICIPANT_ROLES)
    string = {"type": "string"}
    number = {"type": "number"}
    nullable_string = {"type": "string", "nullable": True}
    link = {
        "type": "object",
        "required": ["participant", "role", "url"],
        "properties": {
            "participant": string,
            "role": _ref("SeatRole"),
            "url": {
                "type": "string",
                "description": "The join page; the invite token is in the URL fragment.",
            },
        },
    }
    booking = {
        "kind": _ref("VisitKind"),
        "org": string,
        "created_at": number,
        "updated_at": number,
        "planned_start": {
            "type": "number",
            "nullable": True,
            "description": "Unix time the visit is planned to start, or null.",
        },
        "planned_minutes": {"type": "integer", "minimum": 1, "maximum": MAX_PLANNED_MINUTES},
        "waiting_room": {"type": "boolean"},
        "max_participants": {
            "type": "integer",
            "minimum": MIN_PARTICIPANTS,
            "maximum": MAX_PARTICIPANTS,
        },
    }
    booking_input = {
        "kind": _ref("VisitKind"),
        "planned_start": {**_TIME_INPUT, "nullable": True},
        "planned_minutes": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PLANNED_MINUTES,
            "default": DEFAULT_PLANNED_MINUTES,
        },
        "waiting_room": {
            "type": "boolean",
            "default": True,
            "description": "Whether participants other than the host wait to be let in.",
        },
        "max_participants": {
            "type": "integer",
            "minimum": MIN_PARTICIPANTS,
            "maximum": MAX_PARTICIPANTS,
            "default": DEFAULT_MAX_PARTICIPANTS,
        },
    }
    links_fields = {
        "visit": string,
        "state": _ref("VisitState"),
        "links": {
            "type": "object",
            "description": "The first link of each role; further seats of a role are keyed"
            " role-2, role-3, ...",
            "additionalProperties": string,
        },
        "participants": {"type": "array", "items": link},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {
                            "type": "string",
                            "description": "Stable and machine-readable, e.g. invalid-field,"
                            " visit-full, invalid-transition, token-expired, forbidden.",
                        },
                        "message": string,
                        "field": {
                            "type": "string",
                            "description": "With invalid-field: the field it is about.",
                        },
                        "current": {
                            "type": "string",
                            "enum": [s.value for s in VisitState],
                            "description": "With invalid-transition: the visit's state.",
                        },
                    },
                }
            },
        },
        "VisitKind": {
            "type": "string",
            "enum": [k.value for k in VisitKind],
            "description": "consultation; assisted (a nurse with the citizen hosts); conference"
            " (a GP and a specialist, with or without the citizen).",
        },
        "VisitState": {"type": "string", "enum": [s.value for s in VisitState]},
        "SeatRole": {"type": "string", "enum": seat_roles},
        "Sector": {"type": "string", "enum": [s.value for s in Sector]},
        "ParticipantRequest": {
            "type": "object",
            "required": ["role"],
            "additionalProperties": False,
            "properties": {
                "role": _ref("SeatRole"),
                "name": {
                    "type": "string",
                    "maxLength": MAX_NAME,
                    "nullable": True,
                    "description": "Display name on the tiles; never logged.",
                },
                "sector": _ref("Sector"),
            },
        },
        "VisitCreate": {
            "type": "object",
            "required": ["participants"],
            "additionalProperties": False,
            "properties": {
                **booking_input,
                "participants": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_PARTICIPANTS,
                    "items": _ref("ParticipantRequest"),
                    "description": "One seat each; no more than max_participants (else 409"
                    " visit-full). A conference needs a gp and a specialist.",
                },
            },
        },
        "VisitPatch": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": booking_input,
        },
        "Seat": {
            "type": "object",
            "required": ["participant", "role", "sector", "name"],
            "properties": {
                "participant": string,
                "role": _ref("SeatRole"),
                "sector": _ref("Sector"),
                "name": nullable_string,
            },
        },
        "Visit": {
            "type": "object",
            "required": ["id", "state", "seats", *booking],
            "properties": {
                "id": string,
                "state": _ref("VisitState"),
                **booking,
                "revision": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Counts the recorded changes of the visit.",
                },
                "seats": {"type": "array", "items": _ref("Seat")},
                "removed": {
                    "type": "array",
                    "items": string,
                    "description": "Participants the host removed; they stay out until readmitted.",
                },
                "declined": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "Unix time each participant was last declined in the waiting"
                    " room (they may knock again after the knock pause).",
                },
                "connected": {
                    "type": "array",
                    "items": string,
                    "description": "GET /api/visits/{visit} only: participants connected now.",
                },
            },
        },
        "VisitList": {
            "type": "object",
            "required": ["visits"],
            "properties": {"visits": {"type": "array", "items": _ref("Visit")}},
        },
        "VisitCreated": {
            "type": "object",
            "required": ["visit", "state", "links", "participants", *booking],
            "properties": {**links_fields, **booking},
        },
        "VisitLinks": {
            "type": "object",
            "required": ["visit", "state", "links", "participants"],
            "properties": links_fields,
        },
        "Link": link,
        "VisitStateChange": {
            "type": "object",
            "required": ["visit", "state"],
            "properties": {"visit": string, "state": _ref("VisitState")},
        },
        "RevocationRequest": {
            "type": "object",
            "required": ["jti"],
            "additionalProperties": False,
            "properties": {
                "jti": {"type": "string", "minLength": 1, "maxLength": 200},
                "expires_at": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": LATEST_TIME,
                    "description": "Unix time after which the revocation may be forgotten"
                    " (default: the longest any token can live from now).",
                },
            },
        },
        "Revocation": {
            "type": "object",
            "required": ["jti", "closed_sessions"],
            "properties": {"jti": string, "closed_sessions": {"type": "integer", "minimum": 0}},
        },
        "Drain": {
            "type": "object",
            "required": ["node", "draining", "visits"],
            "properties": {
                "node": string,
                "draining": {"type": "boolean"},
                "visits": {"type": "integer", "minimum": 0},
            },
        },
        "AuditRecord": {
            "type": "object",
            "required": ["time", "action", "result"],
            "properties": {
                "time": number,
                "action": string,
                "result": {"type": "string", "enum": ["allowed", "refused"]},
                **{
                    name: nullable_string
                    for name in (
                        "reason",
                        "subject",
                        "issuer",
                        "sector",
                        "org",
                        "role",
                        "visit",
                        "client",
                        "token",
                    )
                },
                "count": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "How many decisions the record stands for: repeated"
                    " refusals from one address (an IPv6 /64) with one reason in one minute"
                    " share one record; `time` is the first of them",
                },
            },
        },
        "AuditRecords": {
            "type": "object",
            "required": ["records"],
            "properties": {"records": {"type": "array", "items": _ref("AuditRecord")}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "visits", "participants", "media"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded", "draining"]},
                "reasons": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "why the status is degraded: database-unreachable,"
                    " outbox-pending: N (records kept locally, not yet in the database)",
                },
                "node": {"type": "string"},
                "visits": {"type": "integer", "minimum": 0},
                "participants": {"type": "integer", "minimum": 0},
                "media": {"type": "object", "additionalProperties": {"type": "integer"}},
                "tasks": {"type": "integer", "minimum": 0},
            },
        },
    }


def _responses() -> dict[str, Schema]:
    error = _ref("Error")
    return {
        "BadRequest": _json(error, "The request is malformed or a field is invalid"),
        "Unauthorized": _json(error, "No token, or the token was refused (code says why)"),
        "Forbidden": _json(error, "The policy does not allow this caller to do this"),
        "NotFound": _json(error, "No such visit"),
        "Conflict": _json(
            error, "The visit's state does not allow it (current), or the visit is full"
        ),
        "TooManyRequests": _json(error, "Too many failed authentications from this address"),
    }


def _visit_links() -> dict[str, Schema]:
    """OpenAPI links from a created visit to what can be done with it."""
    return {
        name: {"operationId": operation, "parameters": _FROM_VISIT}
        for name, operation in (
            ("GetVisit", "getVisit"),
            ("UpdateVisit", "updateVisit"),
            ("CancelVisit", "cancelVisit"),
            ("EndVisit", "endVisit"),
            ("ReissueLinks", "reissueLinks"),
            ("InviteParticipant", "inviteParticipant"),
        )
    }


EVALUATION_FILTERS: list[Schema] = [
    {
        "name": "from",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Unix time or ISO date",
    },
    {
        "name": "to",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Unix time or ISO date",
    },
    {
        "name": "kind",
        "in": "query",
        "schema": {"type": "string", "enum": ["consultation", "assisted", "conference"]},
    },
    {
        "name": "sector",
        "in": "query",
        "schema": {
            "type": "string",
            "enum": ["citizen", "municipality", "general-practice", "region"],
        },
    },
]


def _paths() -> dict[str, Schema]:
    visit_param = [_VISIT_PARAMETER]
    return {
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
            }
        },
        "/api/visits": {
            "get": {
                "operationId": "listVisits",
                "summary": "The caller's organisation's visits, newest planned start first",
                "description": "Staff tokens only (read-visit, own organisation); an invite"
                " link's token is refused. Visits without a planned start come last.",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": _ref("VisitState"),
                        "description": "Only visits in this state.",
                    },
                    {
                        "name": "from",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Only visits planned to start at or after this time"
                        " (Unix time or ISO 8601 with a timezone).",
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Only visits planned to start at or before this time.",
                    },
                ],
                "responses": {
                    "200": _json(_ref("VisitList"), "The visits (without links)"),
                    **_errors(400, 401, 403, 429),
                },
            },
            "post": {
                "operationId": "createVisit",
                "summary": "Book a visit and get an invite link per seat",
                "description": "create-visit, own organisation. The server sends no SMS or"
                " mail: the caller passes the links on.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("VisitCreate")}},
                },
                "responses": {
                    "201": {
                        **_json(_ref("VisitCreated"), "The visit, its links and seats"),
                        "links": _visit_links(),
                    },
                    **_errors(400, 401, 403, 409, 429),
                },
            },
        },
        "/api/visits/{visit}": {
            "parameters": visit_param,
            "get": {
                "operationId": "getVisit",
                "summary": "A visit, with who is connected now",
                "responses": {
                    "200": _json(_ref("Visit"), "The visit"),
                    **_errors(401, 403, 404, 429),
                },
            },
            "patch": {
                "operationId": "updateVisit",
                "summary": "Change the booking while the visit is scheduled or open",
                "description": "The visit's host (invite). Later: 409 invalid-transition with"
                " the current state. max_participants below the seats booked: 409 visit-full.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("VisitPatch")}},
                },
                "responses": {
                    "200": _json(_ref("Visit"), "The visit as changed"),
                    **_errors(400, 401, 403, 404, 409, 429),
                },
            },
        },
        "/api/visits/{visit}/cancel": {
            "parameters": visit_param,
            "post": {
                "operationId": "cancelVisit",
                "summary": "Cancel a scheduled or open visit",
                "description": "end-visit (host). Anyone connected is disconnected. The event"
                ' log records visit-ended with data {"cancelled": true}.',
                "responses": {
                    "200": _json(_ref("VisitStateChange"), "Cancelled"),
                    **_errors(401, 403, 404, 409, 429),
                },
            },
        },
        "/api/visits/{visit}/end": {
            "parameters": visit_param,
            "post": {
                "operationId": "endVisit",
                "summary": "End the visit for everyone",
                "responses": {
                    "200": _json(_ref("VisitStateChange"), "Ended"),
                    **_errors(401, 403, 404, 409, 429),
                },
            },
        },
        "/api/visits/{visit}/links": {
            "parameters": visit_param,
            "post": {
                "operationId": "reissueLinks",
                "summary": "Issue new invite links for every seat",
                "description": "invite (host), while the visit is live. Earlier links stay"
                " valid until they expire or are revoked. The server sends no SMS or mail.",
                "responses": {
                    "200": _json(_ref("VisitLinks"), "New links"),
                    **_errors(401, 403, 404, 409, 429),
                },
            },
        },
        "/api/visits/{visit}/participants": {
            "parameters": visit_param,
            "post": {
                "operationId": "inviteParticipant",
                "summary": "Add a seat and get its invite link",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ParticipantRequest")}},
                },
                "responses": {
                    "201": _json(_ref("Link"), "The new seat's link"),
                    **_errors(400, 401, 403, 404, 409, 429),
                },
            },
        },
        "/api/visits/{visit}/outcome": {
            "parameters": visit_param,
            "post": {
                "operationId": "recordOutcome",
                "summary": "Record the clinical outcome (host)",
                "description": "A code from the configured list (SCREENVISIT_OUTCOMES); the"
                " optional note is for the clinician only and is never exported.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["outcome"],
                                "properties": {
                                    "outcome": {"type": "string"},
                                    "note": {"type": "string", "maxLength": 2000},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["visit", "outcome"],
                            "properties": {
                                "visit": {"type": "string"},
                                "outcome": {"type": "string"},
                            },
                        },
                        "Recorded",
                    ),
                    **_errors(400, 401, 403, 404, 409, 429),
                },
            },
        },
        "/api/visits/{visit}/link": {
            "parameters": visit_param,
            "get": {
                "operationId": "checkLink",
                "summary": "Check an invite link without joining (the join page, on load)",
                "description": "Valid link to a seat in this visit: the visit's state and "
                "when it opens. No seat is taken; refusals are rate-limited and audited as "
                "for a join.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["visit", "state", "kind", "role", "now"],
                            "properties": {
                                "visit": {"type": "string"},
                                "state": _ref("VisitState"),
                                "kind": {"type": "string"},
                                "role": {"type": "string"},
                                "planned_start": {"type": "number", "nullable": True},
                                "opens_at": {"type": "number", "nullable": True},
                                "now": {"type": "number"},
                                "ice_servers": {
                                    "type": "array",
                                    "items": {"type": "object"},
                                    "description": "STUN/TURN servers for the page's"
                                    " connection test, as RTCIceServer dictionaries",
                                },
                            },
                        },
                        "The link is valid",
                    ),
                    **_errors(401, 403, 404, 429),
                },
            },
        },
        "/api/visits/{visit}/survey": {
            "parameters": visit_param,
            "post": {
                "operationId": "answerSurvey",
                "summary": "The citizen's three optional questions, each 1 to 5",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    q: {"type": "integer", "minimum": 1, "maximum": 5}
                                    for q in ("q1", "q2", "q3")
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["visit", "answers"],
                            "properties": {
                                "visit": {"type": "string"},
                                "answers": {"type": "object"},
                            },
                        },
                        "Recorded",
                    ),
                    **_errors(400, 401, 403, 404, 409, 429),
                },
            },
        },
        "/api/evaluation/report": {
            "get": {
                "operationId": "evaluationReport",
                "summary": "The evaluator's organisation, aggregated and pseudonymous",
                "parameters": EVALUATION_FILTERS,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["org", "visits", "report"],
                            "properties": {
                                "org": {"type": "string"},
                                "visits": {"type": "integer"},
                                "report": {"type": "object"},
                            },
                        },
                        "The report",
                    ),
                    **_errors(400, 401, 403, 429),
                },
            },
        },
        "/api/evaluation/export": {
            "get": {
                "operationId": "evaluationExport",
                "summary": "Per-visit evaluation data: CSV, JSON or a FHIR R4 Bundle",
                "parameters": [
                    *EVALUATION_FILTERS,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["csv", "participants-csv", "json", "fhir"],
                        },
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The export",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/json": {"schema": {"type": "array"}},
                            "application/fhir+json": {"schema": {"type": "object"}},
                        },
                    },
                    **_errors(400, 401, 403, 429),
                },
            },
        },
        "/api/audit": {
            "get": {
                "operationId": "readAudit",
                "summary": "Access decisions (admins)",
                "parameters": [
                    {"name": "visit", "in": "query", "schema": {"type": "string"}},
                    {"name": "subject", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Unix time or ISO 8601 with a timezone.",
                    },
                    {"name": "until", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10_000},
                    },
                ],
                "responses": {
                    "200": _json(_ref("AuditRecords"), "The newest matching records"),
                    **_errors(400, 401, 403, 429),
                },
            },
        },
        "/api/admin/revocations": {
            "post": {
                "operationId": "revokeToken",
                "summary": "Revoke a token by its jti (admins); live sessions with it close",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("RevocationRequest")}},
                },
                "responses": {
                    "201": _json(_ref("Revocation"), "Revoked"),
                    **_errors(400, 401, 403, 429),
                },
            }
        },
        "/api/admin/drain": {
            "post": {
                "operationId": "drainNode",
                "summary": "Drain the node that answers (admins): no new visits; it stops once"
                " its visits end, or hands them to other nodes after the drain timeout",
                "responses": {
                    "202": _json(_ref("Drain"), "Draining"),
                    **_errors(401, 403, 429),
                },
            }
        },
        "/api/connection-test": {
            "get": {
                "operationId": "connectionTest",
                "summary": "The join page's connection test: round trip and download rate",
                "description": "Returns `bytes` bytes that do not compress; no token needed.",
                "security": [],
                "parameters": [
                    {
                        "name": "bytes",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 524288},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The payload",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **_errors(400),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness and live counts",
                "security": [],
                "responses": {"200": _json(_ref("Health"), "Up")},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the HTTP API (a new dict each call)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "screenvisit",
            "version": "0.1.0",
            "description": "Booking and access API for video consultations across Danish"
            " healthcare sectors. Tokens are JWTs from a trusted issuer (README: Access);"
            ' errors are {"error": {"code", "message"}}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": _schemas(),
            "responses": _responses(),
        },
    }
