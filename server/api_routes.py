"""The JSON API's routes as one table: each route's handler and the models it takes and answers.
The router is filled from it and the OpenAPI document is written from it."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from server import appkeys
from server.api_models import (
    AuditQuery,
    AuditRecords,
    ConnectionTestQuery,
    Drain,
    EvaluationQuery,
    EvaluationReport,
    ExportQuery,
    Health,
    JoinTimeReport,
    JsonDocument,
    Link,
    LinkCheck,
    OutcomeRecorded,
    OutcomeRequest,
    ParticipantRequest,
    Revocation,
    RevocationRequest,
    SurveyRecorded,
    SurveyRequest,
    VisitCreate,
    VisitCreated,
    VisitLinks,
    VisitList,
    VisitListQuery,
    VisitOut,
    VisitPatch,
    VisitStateChange,
)
from server.connection_test import connection_test
from server.http_api import (
    answer_survey,
    cancel_visit,
    check_link,
    create_visit,
    drain_node,
    end_visit,
    evaluation_export,
    evaluation_report,
    get_visit,
    health,
    invite_participant,
    list_visits,
    patch_visit,
    read_audit,
    record_outcome,
    reissue_links,
    revoke_token,
    signaling_socket,
)
from server.metrics import report_join_time
from server.openapi import Handler, Operation, openapi_document
from signaling.asyncapi import asyncapi_document


def _serve(document: dict[str, Any]) -> Handler:
    """A handler answering with `document`, written once (public: it says what the API is,
    not what it holds)."""
    body = json.dumps(document).encode()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return serve


async def openapi_json(request: web.Request) -> web.Response:
    """This API's OpenAPI document (setup_api_routes serves it written once, as `_serve`)."""
    return web.json_response(openapi_document(OPERATIONS, request.app[appkeys.SETTINGS].outcomes))


async def asyncapi_json(request: web.Request) -> web.Response:
    """The signaling protocol's AsyncAPI document (served written once, as `_serve`)."""
    return web.json_response(asyncapi_document())


_FROM_VISIT = {"visit": "$response.body#/visit"}
_VISIT_ERRORS = (401, 403, 404, 409, 429)

#: Every route of the JSON API, what it takes and what it answers: the routes are added and
#: the OpenAPI document is written from this table.
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/api/openapi.json",
        openapi_json,
        "getOpenApi",
        "This document",
        {200: JsonDocument},
        errors=(),
        public=True,
    ),
    Operation(
        "GET",
        "/asyncapi.json",
        asyncapi_json,
        "getAsyncApi",
        "The signaling socket's messages (AsyncAPI 3)",
        {200: JsonDocument},
        errors=(),
        public=True,
    ),
    Operation(
        "GET",
        "/api/visits",
        list_visits,
        "listVisits",
        "The caller's organisation's visits, newest planned start first",
        {200: VisitList},
        query=VisitListQuery,
        description="Staff tokens only (read-visit, own organisation); an invite link's token"
        " is refused. Visits without a planned start come last.",
    ),
    Operation(
        "POST",
        "/api/visits",
        create_visit,
        "createVisit",
        "Book a visit and get an invite link per seat",
        {201: VisitCreated},
        errors=(400, 401, 403, 409, 429),
        body=VisitCreate,
        description="create-visit, own organisation. The server sends no SMS or mail: the"
        " caller passes the links on.",
        links={
            "GetVisit": ("getVisit", _FROM_VISIT),
            "UpdateVisit": ("updateVisit", _FROM_VISIT),
            "CancelVisit": ("cancelVisit", _FROM_VISIT),
            "EndVisit": ("endVisit", _FROM_VISIT),
            "ReissueLinks": ("reissueLinks", _FROM_VISIT),
            "InviteParticipant": ("inviteParticipant", _FROM_VISIT),
        },
    ),
    Operation(
        "GET",
        "/api/visits/{visit}",
        get_visit,
        "getVisit",
        "A visit, with who is connected now",
        {200: VisitOut},
        errors=(401, 403, 404, 429),
    ),
    Operation(
        "PATCH",
        "/api/visits/{visit}",
        patch_visit,
        "updateVisit",
        "Change the booking while the visit is scheduled or open",
        {200: VisitOut},
        errors=(400, *_VISIT_ERRORS),
        body=VisitPatch,
        description="The visit's host (invite). Later: 409 invalid-transition with the current"
        " state. max_participants below the seats booked: 409 visit-full. A kind the seats do"
        " not suit: 409 invalid-field.",
    ),
    Operation(
        "POST",
        "/api/visits/{visit}/cancel",
        cancel_visit,
        "cancelVisit",
        "Cancel a scheduled or open visit",
        {200: VisitStateChange},
        errors=_VISIT_ERRORS,
        description="end-visit (host). Anyone connected is disconnected.",
    ),
    Operation(
        "POST",
        "/api/visits/{visit}/end",
        end_visit,
        "endVisit",
        "End the visit for everyone",
        {200: VisitStateChange},
        errors=_VISIT_ERRORS,
    ),
    Operation(
        "POST",
        "/api/visits/{visit}/outcome",
        record_outcome,
        "recordOutcome",
        "Record the clinical outcome (host)",
        {201: OutcomeRecorded},
        errors=(400, *_VISIT_ERRORS),
        body=OutcomeRequest,
        description="A code from the configured list (SCREENVISIT_OUTCOMES); the optional note"
        " is for the clinician only and is never exported.",
    ),
    Operation(
        "POST",
        "/api/visits/{visit}/survey",
        answer_survey,
        "answerSurvey",
        "The citizen's three optional questions, each 1 to 5",
        {201: SurveyRecorded},
        errors=(400, *_VISIT_ERRORS),
        body=SurveyRequest,
    ),
    Operation(
        "POST",
        "/api/visits/{visit}/join-time",
        report_join_time,
        "reportJoinTime",
        "The join page reports its time from opening the link to the first remote frame",
        {},
        errors=(400, 401, 403, 404, 429),
        body=JoinTimeReport,
        content={204: {}},
        description="With the page's own link. Only a histogram keeps it"
        " (screenvisit_join_seconds); nothing is stored.",
    ),
    Operation(
        "GET",
        "/api/connection-test",
        connection_test,
        "connectionTest",
        "The join page's connection test: round trip and download rate",
        {},
        errors=(400,),
        query=ConnectionTestQuery,
        public=True,
        content={200: {"application/octet-stream": {"type": "string", "format": "binary"}}},
        description="Returns `bytes` bytes that do not compress; no token needed.",
    ),
    Operation(
        "GET",
        "/api/visits/{visit}/link",
        check_link,
        "checkLink",
        "Check an invite link without joining (the join page, on load)",
        {200: LinkCheck},
        errors=(401, 403, 404, 429),
        description="Valid link to a seat in this visit: the visit's state and when it opens."
        " No seat is taken; refusals are rate-limited and audited as for a join.",
    ),
    Operation(
        "POST",
        "/api/visits/{visit}/links",
        reissue_links,
        "reissueLinks",
        "Issue new invite links for every seat",
        {200: VisitLinks},
        errors=_VISIT_ERRORS,
        description="invite (host), while the visit is live. Earlier links stay valid until"
        " they expire or are revoked. The server sends no SMS or mail.",
    ),
    Operation(
        "POST",
        "/api/visits/{visit}/participants",
        invite_participant,
        "inviteParticipant",
        "Add a seat and get its invite link",
        {201: Link},
        errors=(400, *_VISIT_ERRORS),
        body=ParticipantRequest,
    ),
    Operation(
        "POST",
        "/api/admin/revocations",
        revoke_token,
        "revokeToken",
        "Revoke a token by its jti (admins); live sessions with it close",
        {201: Revocation},
        body=RevocationRequest,
    ),
    Operation(
        "POST",
        "/api/admin/drain",
        drain_node,
        "drainNode",
        "Drain the node that answers (admins): no new visits; it stops once its visits end,"
        " or hands them to other nodes after the drain timeout",
        {202: Drain},
        errors=(401, 403, 429),
    ),
    Operation(
        "GET",
        "/api/audit",
        read_audit,
        "readAudit",
        "Access decisions (admins)",
        {200: AuditRecords},
        query=AuditQuery,
    ),
    Operation(
        "GET",
        "/api/evaluation/report",
        evaluation_report,
        "evaluationReport",
        "The evaluator's organisation, aggregated and pseudonymous",
        {200: EvaluationReport},
        query=EvaluationQuery,
    ),
    Operation(
        "GET",
        "/api/evaluation/export",
        evaluation_export,
        "evaluationExport",
        "Per-visit evaluation data: CSV, JSON or a FHIR R4 Bundle",
        {},
        query=ExportQuery,
        content={
            200: {
                "text/csv": {"type": "string"},
                "application/json": {"type": "array"},
                "application/fhir+json": {"type": "object"},
            }
        },
    ),
    Operation(
        "GET",
        "/healthz",
        health,
        "health",
        "Liveness and live counts",
        {200: Health},
        errors=(),
        public=True,
    ),
)


def setup_api_routes(app: web.Application) -> None:
    outcomes = app[appkeys.SETTINGS].outcomes
    served: dict[Handler, Handler] = {
        openapi_json: _serve(openapi_document(OPERATIONS, outcomes)),
        asyncapi_json: _serve(asyncapi_document()),
    }
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, served.get(op.handler, op.handler))
    app.router.add_get("/ws", signaling_socket)
