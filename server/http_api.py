"""The JSON API: visits, health and the signaling socket."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from rooms.durable import DATABASE_DOWN
from rooms.errors import InvalidTransition, NotPermitted, RoomsError
from rooms.ids import VISIT_ID_PATTERN, VisitId
from rooms.outcomes import SURVEY_QUESTIONS, OutcomeRejected
from rooms.policy import Action
from rooms.principal import Principal
from rooms.visit import Seat, Visit, VisitState
from server import appkeys
from server.api_models import (
    MAX_QUERY_TEXT,
    AuditQuery,
    AuditRecords,
    Drain,
    ErrorBody,
    ErrorDetail,
    EvaluationQuery,
    EvaluationReport,
    ExportQuery,
    Health,
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
from server.clientaddr import client_address
from server.console_session import console_principal
from server.errors import ApiError, status_for
from server.fhir_outcome import http_outcome, is_fhir
from server.reports import EXPORTS, Filters, ReportUnavailable
from server.trust import DEFAULT_MAX_LIFETIME
from server.visits import (
    KEEP,
    BookingChange,
    FieldError,
    authorized_visit,
    book_visit,
    cancel_booking,
    ensure_live,
    invite_links,
    link_status,
    links_by_role,
    record_invited,
    update_visit,
)
from signaling.bus import BusUnavailable
from signaling.node import NodeCallFailed
from signaling.safejson import JsonRefused, load_json

#: Revoke for at least as long as any token can live.
MAX_TOKEN_LIFETIME = max(DEFAULT_MAX_LIFETIME.values())

VISIT_ID = re.compile(VISIT_ID_PATTERN)
M = TypeVar("M", bound=BaseModel)

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(
    code: str,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, **extra))
    return web.Response(
        body=body.model_dump_json(exclude_none=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FieldError as exc:
        return _error(exc.code, exc.message, exc.status, field=exc.field)
    except ApiError as exc:
        return _error(exc.code, exc.message, exc.status)
    except InvalidTransition as exc:
        return _error(exc.code, exc.message, 409, current=exc.current)
    except RoomsError as exc:
        return _error(getattr(exc, "code", "error"), exc.message, status_for(exc))
    except DATABASE_DOWN as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client went away: nothing to answer
        # Reads have no outbox: say so, precisely and at once (every call is bounded).
        logger.warning(
            "%s %s: database unavailable (%s)", request.method, request.path, type(exc).__name__
        )
        return _error("database-unavailable", "the database is not answering; try again", 503)
    except web.HTTPException as exc:
        if is_fhir(request) and exc.status >= 400:
            return http_outcome(request, exc)  # refused before the FHIR app's own middleware
        if request.path.startswith("/api/") and exc.status >= 400:
            allow = exc.headers.get("Allow")
            headers = {"Allow": allow} if allow is not None else None
            return _error("http-" + str(exc.status), exc.reason, exc.status, headers)
        raise


def client_of(request: web.Request) -> str | None:
    return client_address(request, request.app[appkeys.SETTINGS].trusted_proxies)


async def principal_for(
    request: web.Request, action: Action, visit_id: str | None = None
) -> Principal:
    """Authenticate the bearer token for `action`; every refusal lands in the audit log."""
    access = request.app[appkeys.ACCESS]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        via_console = await console_principal(request, action, visit_id)
        if via_console is not None:
            return via_console
        await access.refuse_request(action, client_of(request), "token-missing")
        raise ApiError("token-missing", "send 'Authorization: Bearer <token>'", 401)
    return await access.authenticate(
        token.strip(), action=action, client=client_of(request), visit=visit_id
    )


async def _json_body(request: web.Request, principal: Principal, action: Action) -> dict[str, Any]:
    """The request's JSON object. A body that is not JSON at all (or nests too deeply, or holds
    a huge integer) is audited and counted against the address, like a failed token."""
    try:
        body = load_json(await request.read())
    except JsonRefused as exc:
        await request.app[appkeys.ACCESS].refuse_request(
            action, client_of(request), exc.code, principal=principal
        )
        raise ApiError(exc.code, f"the request body is refused: {exc.message}") from None
    if not isinstance(body, dict):
        raise ApiError("invalid-body", "the request body must be a JSON object")
    return body


# --- validation ---------------------------------------------------------------------------------

#: Where pydantic's location of an error leaves the fields and names a branch of a union.
_BRANCHES = frozenset({"str", "float", "int", "bool"})


def _field_name(loc: tuple[int | str, ...]) -> str:
    """`participants[2].role` for pydantic's ("participants", 2, "role")."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part in _BRANCHES or not part.isidentifier():
            break
        else:
            name += ("." if name else "") + part
    return name


def _refusal(exc: ValidationError) -> tuple[str, str]:
    """The field the first error is about, and a message that quotes it."""
    error = exc.errors(include_url=False, include_input=False)[0]
    name = _field_name(error["loc"])
    if error["type"] == "extra_forbidden":
        return name, f"unknown field '{name}' (a visit holds no free text about the citizen)"
    return name, f"'{name}': {error['msg']}"


async def _body(request: web.Request, principal: Principal, action: Action, model: type[M]) -> M:
    """The request's JSON object as `model`; 400 invalid-field naming the field otherwise."""
    raw = await _json_body(request, principal, action)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise FieldError(*_refusal(exc)) from None


def _query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; 400 invalid-query naming the parameter otherwise."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise ApiError("invalid-query", _refusal(exc)[1]) from None


def _answer(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _is_short_text(text: str) -> bool:
    return len(text) <= MAX_QUERY_TEXT and text.isprintable()


# --- visits -------------------------------------------------------------------------------------


def _booking(visit: Visit) -> dict[str, Any]:
    """The visit's own fields, as the create response repeats them beside the links."""
    return {
        "kind": visit.kind.value,
        "org": visit.org,
        "created_at": visit.created_at,
        "updated_at": visit.updated_at,
        "planned_start": visit.planned_start,
        "planned_minutes": visit.planned_minutes,
        "waiting_room": visit.waiting_room,
        "max_participants": visit.max_participants,
    }


async def create_visit(request: web.Request) -> web.Response:
    principal = await principal_for(request, Action.CREATE_VISIT)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.CREATE_VISIT, None, client=client_of(request)
    )
    body = await _body(request, principal, Action.CREATE_VISIT, VisitCreate)
    visit = await book_visit(
        request.app,
        principal,
        body.kind,
        [(seat.role, seat.name, seat.sector) for seat in body.participants],
        planned_start=body.planned_start,
        planned_minutes=body.planned_minutes,
        waiting_room=body.waiting_room,
        max_participants=body.max_participants,
    )
    participants = invite_links(request.app, visit)
    created = VisitCreated(
        visit=visit.id,
        state=visit.state,
        **_booking(visit),
        links=links_by_role(participants),
        participants=participants,
    )
    return _answer(created, 201)


async def list_visits(request: web.Request) -> web.Response:
    """The caller's organisation's visits, newest planned start first; unplanned ones last,
    newest booked first. `state`, and `from`/`to` (bounds on the planned start), filter."""
    principal = await principal_for(request, Action.READ_VISIT)
    access = request.app[appkeys.ACCESS]
    if principal.visit is not None or principal.participant is not None:
        reason = "an invite link opens only its own visit"
        await access.record(
            principal, Action.READ_VISIT, None, client_of(request), allowed=False, reason=reason
        )
        raise NotPermitted(reason)
    await access.authorize(principal, Action.READ_VISIT, None, client=client_of(request))
    if principal.org is None:  # staff tokens always name one; refuse rather than list all
        raise ApiError("org-required", "the token names no organisation", 403)
    query = _query(request, VisitListQuery)
    state, start, end = query.state, query.from_, query.to
    visits = await request.app[appkeys.STORE].list_by_org(principal.org)
    chosen = [
        v
        for v in visits
        if (state is None or v.state is state)
        and (start is None or (v.planned_start is not None and v.planned_start >= start))
        and (end is None or (v.planned_start is not None and v.planned_start <= end))
    ]
    chosen.sort(
        key=lambda v: (v.planned_start is not None, v.planned_start or 0.0, v.created_at),
        reverse=True,
    )
    return _answer(VisitList(visits=[v.to_dict() for v in chosen]))


async def _visit_for(
    request: web.Request, action: Action, principal: Principal | None = None
) -> tuple[Principal, Visit]:
    """The visit of the route and the authenticated principal (`principal` when already
    authenticated), authorized for `action`."""
    visit_id = request.match_info["visit"]
    return await authorized_visit(
        request, visit_id, action, principal_for, client_of(request), principal
    )


async def get_visit(request: web.Request) -> web.Response:
    _principal, visit = await _visit_for(request, Action.READ_VISIT)
    body = visit.to_dict()
    elsewhere = await _on_owner(request, visit.id, "connected")
    if elsewhere is not None:
        body["connected"] = elsewhere["connected"]
    else:
        hub = request.app[appkeys.HUBS].hubs.get(visit.id)
        body["connected"] = sorted(hub.sessions) if hub else []
    return _answer(VisitOut.model_validate(body))


async def _on_owner(
    request: web.Request, visit_id: VisitId, op: str, **args: Any
) -> dict[str, Any] | None:
    """Run `op` on the node hosting the visit when that is another node (None: act here)."""
    try:
        return await request.app[appkeys.NODE].on_owner(visit_id, op, args)
    except NodeCallFailed as exc:
        raise ApiError(exc.code, exc.message, 503) from None


async def patch_visit(request: web.Request) -> web.Response:
    """The host changes the booking (time, length, waiting room, seats, kind) while the visit is
    scheduled or open; later, 409 with the current state."""
    principal, visit = await _visit_for(request, Action.INVITE)
    patch = await _body(request, principal, Action.INVITE, VisitPatch)
    given = patch.model_fields_set
    if not given:
        fields = ", ".join(VisitPatch.model_fields)
        raise ApiError("invalid-body", f"name at least one field to change: {fields}")
    change = BookingChange(
        kind=patch.kind,
        planned_start=patch.planned_start if "planned_start" in given else KEEP,
        planned_minutes=patch.planned_minutes,
        waiting_room=patch.waiting_room,
        max_participants=patch.max_participants,
    )
    updated = await update_visit(request.app, visit.id, change.apply)
    request.app[appkeys.JANITOR].watch(updated)
    return _answer(VisitOut.model_validate(updated.to_dict()))


async def cancel_visit(request: web.Request) -> web.Response:
    """Cancel a scheduled or open visit; anyone already connected is told and disconnected."""
    principal, visit = await _visit_for(request, Action.END_VISIT)
    cancelled = await cancel_booking(request.app, principal, visit.id)
    return _answer(VisitStateChange(visit=cancelled.id, state=cancelled.state))


async def end_visit(request: web.Request) -> web.Response:
    _principal, visit = await _visit_for(request, Action.END_VISIT)
    if visit.state is VisitState.ENDED:
        raise InvalidTransition(f"visit {visit.id} has already ended", visit.state.value)
    elsewhere = await _on_owner(request, visit.id, "end-visit")
    if elsewhere is not None:
        return _answer(VisitStateChange(visit=visit.id, state=elsewhere["state"]))
    await request.app[appkeys.HUBS].end_visit(visit)
    return _answer(VisitStateChange(visit=visit.id, state=visit.state))


async def reissue_links(request: web.Request) -> web.Response:
    """New invite links for every seat, for the host to pass on (the server sends no SMS or
    mail). Links issued before stay valid until they expire or are revoked."""
    _principal, visit = await _visit_for(request, Action.INVITE)
    ensure_live(visit)
    # Recorded before the links go out, so that they open after any loss of live state.
    visit = await update_visit(request.app, visit.id, ensure_live)
    participants = invite_links(request.app, visit)
    links = links_by_role(participants)
    return _answer(
        VisitLinks(visit=visit.id, state=visit.state, links=links, participants=participants)
    )


async def invite_participant(request: web.Request) -> web.Response:
    """The host adds a seat (a relative, an interpreter, ...) and gets its invite link."""
    principal, visit = await _visit_for(request, Action.INVITE)
    ensure_live(visit)
    seat_request = await _body(request, principal, Action.INVITE, ParticipantRequest)
    role, name, sector = seat_request.role, seat_request.name, seat_request.sector
    added: list[Seat] = []

    def add(fresh: Visit) -> None:
        ensure_live(fresh)
        added.append(fresh.add_seat(role, name, sector))

    updated = await update_visit(request.app, visit.id, add)
    seat = added[-1]  # the store may have run `add` more than once; the last one was stored
    await record_invited(request.app, updated, seat)
    links = invite_links(request.app, updated)
    link = next(e for e in links if e["participant"] == seat.participant)
    return _answer(Link.model_validate(link), 201)


async def record_outcome(request: web.Request) -> web.Response:
    """The host records the clinical outcome (a code from the configured list, and an optional
    note that stays out of every evaluation export)."""
    principal, visit = await _visit_for(request, Action.RECORD_OUTCOME)
    body = await _body(request, principal, Action.RECORD_OUTCOME, OutcomeRequest)
    outcome, note = body.outcome, body.note
    seat = visit.seats.get(principal.participant) if principal.participant else None
    try:
        await request.app[appkeys.OUTCOMES].record_outcome(
            visit.id, visit.org, seat, principal.role.value, principal.sector.value, outcome, note
        )
    except OutcomeRejected as exc:
        raise ApiError(exc.code, exc.message) from None
    return _answer(OutcomeRecorded(visit=visit.id, outcome=outcome), 201)


async def answer_survey(request: web.Request) -> web.Response:
    """The citizen's three optional questions (1-5), with their own link, also after the visit."""
    principal, visit = await _visit_for(request, Action.ANSWER_SURVEY)
    body = await _body(request, principal, Action.ANSWER_SURVEY, SurveyRequest)
    assert principal.participant is not None  # the SEAT scope made sure of it
    try:
        answers = await request.app[appkeys.OUTCOMES].record_survey(
            visit.id, visit.org, visit.seats[principal.participant], body.model_dump()
        )
    except OutcomeRejected as exc:
        raise ApiError(exc.code, exc.message) from None
    recorded = dict(zip(SURVEY_QUESTIONS, answers, strict=True))
    return _answer(SurveyRecorded(visit=visit.id, answers=recorded), 201)


async def check_link(request: web.Request) -> web.Response:
    """What the join page needs before any device prompt: is this a valid link to a seat in
    this visit, and what state is the visit in. No seat is taken and nobody is told; refused
    tokens are rate-limited and every decision is audited, as for a join."""
    visit_id = request.match_info["visit"]
    well_formed = VISIT_ID.fullmatch(visit_id) is not None
    audited_id = visit_id if well_formed else None
    principal = await principal_for(request, Action.CHECK_LINK, audited_id)
    access = request.app[appkeys.ACCESS]
    refusal: tuple[str, str, int] | None = None
    if principal.visit is None or principal.participant is None:
        refusal = ("token-not-a-link", "this token does not open a seat in a visit", 403)
    elif principal.visit != visit_id:
        refusal = ("token-visit-mismatch", "this link belongs to another visit", 403)
    if refusal is not None:
        await access.record(
            principal,
            Action.CHECK_LINK,
            audited_id,
            client_of(request),
            allowed=False,
            reason=refusal[0],
        )
        raise ApiError(*refusal)
    principal, visit = await _visit_for(request, Action.CHECK_LINK, principal)
    assert principal.participant is not None
    check = LinkCheck(
        visit=visit.id,
        state=visit.state,
        kind=visit.kind,
        role=visit.seats[principal.participant].role.value,
        **link_status(request.app, visit, time.time()),
        # For the pre-call connection test (UDP reachability through STUN/TURN).
        ice_servers=[s.to_browser() for s in request.app[appkeys.SETTINGS].ice_servers],
    )
    return _answer(check, headers={"Cache-Control": "no-store"})


def _evaluation_filters(query: EvaluationQuery) -> Filters:
    return Filters(
        since=query.from_,
        until=query.to,
        kind=None if query.kind is None else query.kind.value,
        sector=None if query.sector is None else query.sector.value,
    )


async def _evaluator(request: web.Request) -> str:
    """The evaluator's organisation."""
    principal = await principal_for(request, Action.READ_EVALUATION)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.READ_EVALUATION, None, client=client_of(request)
    )
    assert principal.org is not None  # staff tokens name their organisation
    return principal.org


async def evaluation_report(request: web.Request) -> web.Response:
    """The aggregated evaluation of the evaluator's organisation, pseudonymous (built off the
    loop: in a worker process, `server.reports.ReportWorkers`)."""
    org = await _evaluator(request)
    filters = _evaluation_filters(_query(request, EvaluationQuery))
    try:
        visits, built = await request.app[appkeys.REPORTS].report(org, filters)
    except ReportUnavailable as exc:
        raise ApiError("report-unavailable", str(exc), status=503) from None
    return _answer(EvaluationReport(org=org, visits=visits, report=built.to_dict()))


async def evaluation_export(request: web.Request) -> web.Response:
    """CSV, JSON or FHIR R4 (a Bundle of Encounter and QuestionnaireResponse resources)."""
    org = await _evaluator(request)
    query = _query(request, ExportQuery)
    fmt, filters = query.format, _evaluation_filters(query)
    try:
        text = await request.app[appkeys.REPORTS].export(
            org, filters, fmt, request.app[appkeys.PSEUDONYMS]
        )
    except ReportUnavailable as exc:
        raise ApiError("report-unavailable", str(exc), status=503) from None
    _render, content_type, filename = EXPORTS[fmt]
    return web.Response(
        text=text,
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def revoke_token(request: web.Request) -> web.Response:
    principal = await principal_for(request, Action.REVOKE_TOKEN)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.REVOKE_TOKEN, None, client=client_of(request)
    )
    body = await _body(request, principal, Action.REVOKE_TOKEN, RevocationRequest)
    jti = body.jti
    expires_at = body.expires_at
    if expires_at is None:
        expires_at = time.time() + MAX_TOKEN_LIFETIME
    await request.app[appkeys.REVOCATIONS].revoke(jti, expires_at)
    closed = request.app[appkeys.HUBS].close_token(jti)
    try:
        await request.app[appkeys.NODE].broadcast(
            {"type": "revoked", "jti": jti, "expires_at": expires_at}
        )
    except BusUnavailable:
        # Stored: the other nodes refuse the token once they reload (at their next start).
        logger.warning("revocation not announced to the other nodes (bus unavailable)")
    return _answer(Revocation(jti=jti, closed_sessions=closed), 201)


async def drain_node(request: web.Request) -> web.Response:
    """This node takes no new visits, waits for its visits to end (or hands them on after the
    drain timeout), then stops."""
    principal = await principal_for(request, Action.DRAIN_NODE)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.DRAIN_NODE, None, client=client_of(request)
    )
    node = request.app[appkeys.NODE]
    visits = len(request.app[appkeys.HUBS].hubs)
    if not node.draining:
        # Registered as draining before the answer: a visit booked after it goes elsewhere.
        await node.refuse_new_visits()
        request.app[appkeys.DRAINER].start(request.app)
    return _answer(Drain(node=node.id, draining=True, visits=visits), 202)


async def read_audit(request: web.Request) -> web.Response:
    principal = await principal_for(request, Action.READ_AUDIT)
    query = _query(request, AuditQuery)
    visit = query.visit
    await request.app[appkeys.ACCESS].authorize(
        principal,
        Action.READ_AUDIT,
        None,
        client=client_of(request),
        visit_id=visit if visit is not None and _is_short_text(visit) else None,
    )
    records = await request.app[appkeys.AUDIT].query(
        visit=visit,
        subject=query.subject,
        since=query.since,
        until=query.until,
        limit=query.limit,
    )
    return _answer(AuditRecords(records=[dataclasses.asdict(r) for r in records]))


async def health(request: web.Request) -> web.Response:
    hubs = request.app[appkeys.HUBS].hubs
    node = request.app[appkeys.NODE]
    reasons = request.app[appkeys.DURABLE].reasons()
    status = "draining" if node.draining else "degraded" if reasons else "ok"
    answer = Health(
        status=status,
        reasons=reasons,
        node=node.id,
        visits=len(hubs),
        participants=sum(h.connected() for h in hubs.values()),
        media=request.app[appkeys.SFU].counters.to_dict(),
        # Every asyncio task alive in this process: flat while visits come and go.
        tasks=len(asyncio.all_tasks()),
    )
    return _answer(answer)


#: Seconds of silence before the server pings a signaling socket; a client that does not answer
#: within half of it is cut off (so within 9 s of its last word).
SOCKET_HEARTBEAT = 6.0


async def signaling_socket(request: web.Request) -> web.WebSocketResponse:
    # A hard limit well above the protocol's own, so an oversize message gets a precise error
    # from the session (and the socket lives on) rather than aiohttp closing it.
    ws = web.WebSocketResponse(heartbeat=SOCKET_HEARTBEAT, max_msg_size=1024 * 1024, timeout=2)
    await ws.prepare(request)
    await request.app[appkeys.NODE].serve_socket(ws, client_of(request))
    return ws
