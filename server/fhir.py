"""The FHIR R4 endpoint under /fhir: Appointment create, read, search and update, for EHRs.

A sub-application with one middleware that answers every error, the router's 404 and 405
included, as an OperationOutcome in application/fhir+json. Access is the JSON API's: the same
bearer tokens, policy actions and audit trail. Bookings go through server.visits, so a FHIR
booking is exactly as durable as a JSON one (its row is in SQL before the 201); the EHR's
references to the people in it are kept beside it (rooms.actor_refs) while the visit is live.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from rooms.actor_refs import SqlActorRefs
from rooms.durable import DATABASE_DOWN
from rooms.errors import (
    AuthenticationFailed,
    InvalidTransition,
    NotPermitted,
    RoomsError,
    VisitFull,
    VisitNotFound,
)
from rooms.ids import ParticipantId
from rooms.periodic import Periodic
from rooms.policy import Action, authorize
from rooms.principal import Principal
from rooms.store import StoreUnavailable
from rooms.visit import Visit, VisitState
from server import appkeys
from server.clientaddr import client_address
from server.errors import ApiError, status_for
from server.fhir_mapping import (
    EXT_KIND,
    EXT_LINK_PERIOD,
    EXT_MAX_PARTICIPANTS,
    EXT_MEETING_URL,
    EXT_PARTICIPANT_ID,
    EXT_WAITING_ROOM,
    ROLE_SYSTEM,
    STATUS_OF,
    AppointmentRequest,
    FhirError,
    invalid,
    parse_appointment,
    render_appointment,
    resource_id,
    version_of,
    visit_id_of,
)
from server.fhir_outcome import FHIR_JSON, http_outcome, issue_code, outcome_body
from server.timeparse import parse_day
from server.visits import (
    BookingChange,
    FieldError,
    authorized_visit,
    book_visit,
    cancel_booking,
    invite_links,
    link_window,
    update_visit,
)
from signaling.safejson import JsonRefused, load_json

logger = logging.getLogger(__name__)

FHIR_VERSION = "4.0.1"
#: A date without a time in a search is a day in Denmark.
DAY_ZONE = ZoneInfo("Europe/Copenhagen")
SEARCH_PARAMS = ("date", "actor", "status", "_format")
#: How often the references of visits that are over are deleted.
PURGE_INTERVAL = 3600.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def outcome(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """An OperationOutcome with one error issue; `extra`: `reason` (our machine code),
    `expression` (where in the resource), `headers`."""
    body = outcome_body(code, message, extra.get("reason"), extra.get("expression"))
    return fhir_response(body, status, extra.get("headers"))


def fhir_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers, content_type=FHIR_JSON)


@web.middleware
async def outcome_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as an OperationOutcome; a 500 only for what no rule foresaw."""
    try:
        return await handler(request)
    except FhirError as exc:
        return outcome(exc.status, exc.code, exc.message, expression=exc.expression)
    except FieldError as exc:
        return outcome(422, "business-rule", exc.message, reason=exc.code)
    except VisitFull as exc:
        return outcome(422, "business-rule", exc.message, reason=exc.code)
    except ApiError as exc:
        return outcome(exc.status, issue_code(exc.status), exc.message, reason=exc.code)
    except InvalidTransition as exc:
        return outcome(409, "conflict", exc.message, reason=f"state-{exc.current}")
    except AuthenticationFailed as exc:
        return outcome(exc.status, issue_code(exc.status), exc.message, reason=exc.code)
    except (RoomsError, StoreUnavailable) as exc:
        status = status_for(exc) if isinstance(exc, RoomsError) else 503
        return outcome(status, issue_code(status), str(exc), reason=getattr(exc, "code", None))
    except DATABASE_DOWN as exc:
        logger.warning("%s %s: database unavailable (%s)", request.method, request.path, exc)
        return outcome(503, "transient", "the database is not answering; try again")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_outcome(request, exc)


def _root(request: web.Request) -> web.Application:
    """The server's own application (this one is mounted in it under /fhir)."""
    return request.match_info.apps[0]


def _client(request: web.Request) -> str | None:
    return client_address(request, request.config_dict[appkeys.SETTINGS].trusted_proxies)


def _negotiate(request: web.Request) -> None:
    """406 unless the client takes FHIR JSON (by Accept, or `_format`)."""
    fmt = request.query.get("_format")
    if fmt is not None and fmt not in ("json", FHIR_JSON, "application/json"):
        raise FhirError(406, "not-supported", "only JSON is served (_format=json)")
    accept = request.headers.get("Accept")
    if not accept:
        return
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    takes = {FHIR_JSON, "application/json", "application/json+fhir", "application/*", "*/*"}
    if not ranges & takes:
        raise FhirError(406, "not-supported", f"this server answers in {FHIR_JSON} only")


async def _principal(request: web.Request, action: Action, visit: str | None = None) -> Principal:
    access = request.config_dict[appkeys.ACCESS]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        await access.refuse_request(action, _client(request), "token-missing")
        raise FhirError(401, "login", "send 'Authorization: Bearer <token>'")
    return await access.authenticate(
        token.strip(), action=action, client=_client(request), visit=visit
    )


async def _body(request: web.Request, principal: Principal, action: Action) -> object:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in (FHIR_JSON, "application/json"):
        raise FhirError(415, "not-supported", f"send the resource as {FHIR_JSON}")
    try:
        return load_json(await request.read())
    except JsonRefused as exc:
        await request.config_dict[appkeys.ACCESS].refuse_request(
            action, _client(request), exc.code, principal=principal
        )
        raise FhirError(400, "structure", f"the body is not JSON: {exc.message}") from None


async def _visit(
    request: web.Request, action: Action, principal: Principal | None = None
) -> tuple[Principal, Visit]:
    """The principal (authenticated now unless given) authorized for `action` on the visit of
    the route; audited either way."""
    visit_id = visit_id_of(request.match_info["id"])
    try:
        return await authorized_visit(
            request, visit_id, action, _principal, _client(request), principal
        )
    except VisitNotFound:
        raise FhirError(404, "not-found", "no such Appointment") from None


def _may_invite(principal: Principal, visit: Visit) -> bool:
    """Whether `principal` may have the visit's links (as the JSON API's links reissue)."""
    try:
        authorize(principal, Action.INVITE, visit)
    except NotPermitted:
        return False
    return visit.is_live


def _links(root: web.Application, visit: Visit) -> dict[ParticipantId, str]:
    return {ParticipantId(e["participant"]): e["url"] for e in invite_links(root, visit)}


async def _resource(
    request: web.Request, principal: Principal, visit: Visit, refs: dict[ParticipantId, str]
) -> dict[str, Any]:
    root = _root(request)
    links = _links(root, visit) if _may_invite(principal, visit) else None
    return render_appointment(visit, refs, links, link_window(root))


def _headers(request: web.Request, visit: Visit) -> dict[str, str]:
    base = request.config_dict[appkeys.SETTINGS].base_url
    version = version_of(visit)
    return {
        "Location": f"{base}/fhir/Appointment/{resource_id(visit.id)}/_history/{version}",
        "ETag": f'W/"{version}"',
        "Cache-Control": "no-store",
    }


# --- handlers -----------------------------------------------------------------------------------


async def capability_statement(request: web.Request) -> web.Response:
    """What this server does (public: it says what the endpoint is, not what it holds)."""
    _negotiate(request)
    base = request.config_dict[appkeys.SETTINGS].base_url
    return fhir_response(capabilities(base))


def capabilities(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-04",
        "publisher": "screenvisit",
        "kind": "instance",
        "software": {"name": "screenvisit"},
        "implementation": {
            "description": "screenvisit video visits: book, read, search, reschedule, cancel",
            "url": f"{base}/fhir",
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "A bearer JWT from an issuer in the server's trust file,"
                    " naming the caller's organisation (`org`) and role (gp, specialist or"
                    " nurse); every decision is audited."
                },
                "resource": [
                    {
                        "type": "Appointment",
                        "documentation": "Participant roles: participant.type coded in"
                        f" {ROLE_SYSTEM}; extensions {EXT_KIND}, {EXT_WAITING_ROOM},"
                        f" {EXT_MAX_PARTICIPANTS}; answers carry {EXT_MEETING_URL},"
                        f" {EXT_LINK_PERIOD} and {EXT_PARTICIPANT_ID} per participant.",
                        "interaction": [
                            {"code": "read"},
                            {"code": "update"},
                            {"code": "create"},
                            {"code": "search-type"},
                        ],
                        "updateCreate": False,
                        "searchParam": [
                            {"name": "date", "type": "date"},
                            {"name": "actor", "type": "reference"},
                            {"name": "status", "type": "token"},
                        ],
                    }
                ],
            }
        ],
    }


async def create_appointment(request: web.Request) -> web.Response:
    _negotiate(request)
    root = _root(request)
    principal = await _principal(request, Action.CREATE_VISIT)
    access = root[appkeys.ACCESS]
    await access.authorize(principal, Action.CREATE_VISIT, None, client=_client(request))
    wanted = parse_appointment(await _body(request, principal, Action.CREATE_VISIT))
    if wanted.status != "booked":
        raise invalid("a new Appointment has status booked", "Appointment.status")
    visit = await book_visit(
        root,
        principal,
        wanted.kind,
        [(p.role, p.display, None) for p in wanted.participants],
        planned_start=wanted.start,
        planned_minutes=wanted.minutes,
        waiting_room=wanted.waiting_room,
        max_participants=wanted.max_participants,
    )
    refs = {
        seat: p.reference
        for seat, p in zip(visit.seats, wanted.participants, strict=True)
        if p.reference is not None
    }
    try:
        await request.config_dict[appkeys.ACTOR_REFS].put(visit.id, visit.org, refs)
    except DATABASE_DOWN:
        # Booked but without its references: take the booking back rather than half-keep it.
        with contextlib.suppress(*DATABASE_DOWN, StoreUnavailable):
            await root[appkeys.STORE].delete(visit.id)
        raise
    body = await _resource(request, principal, visit, refs)
    return fhir_response(body, 201, _headers(request, visit))


async def read_appointment(request: web.Request) -> web.Response:
    _negotiate(request)
    principal, visit = await _visit(request, Action.READ_VISIT)
    refs = await request.config_dict[appkeys.ACTOR_REFS].for_visit(visit.id)
    headers = _headers(request, visit)
    del headers["Location"]
    return fhir_response(await _resource(request, principal, visit, refs), headers=headers)


async def update_appointment(request: web.Request) -> web.Response:
    """Reschedule (start, end, kind, waiting room, seats' names and references) or cancel."""
    _negotiate(request)
    principal = await _principal(request, Action.INVITE)
    body = await _body(request, principal, Action.INVITE)
    if not isinstance(body, dict) or body.get("id") != request.match_info["id"]:
        raise FhirError(
            400, "invalid", "Appointment.id must be the id in the URL", "Appointment.id"
        )
    wanted = parse_appointment(body)
    root = _root(request)
    refs_store = request.config_dict[appkeys.ACTOR_REFS]
    if wanted.status == "cancelled":
        principal, visit = await _visit(request, Action.END_VISIT, principal)
        if visit.state is not VisitState.CANCELLED:
            visit = await cancel_booking(root, principal, visit.id)
        await refs_store.forget(visit.id)
        return fhir_response(await _resource(request, principal, visit, {}), headers=_etag(visit))
    principal, visit = await _visit(request, Action.INVITE, principal)
    seats = _matched_seats(visit, wanted)
    change = BookingChange(
        kind=wanted.kind,
        planned_start=wanted.start,
        planned_minutes=wanted.minutes,
        waiting_room=wanted.waiting_room,
        max_participants=wanted.max_participants,
    )

    def reschedule(fresh: Visit) -> None:
        change.apply(fresh)
        for participant, asked in seats.items():
            fresh.seats[participant].name = asked.display

    updated = await update_visit(root, visit.id, reschedule)
    root[appkeys.JANITOR].watch(updated)
    refs = {p: asked.reference for p, asked in seats.items() if asked.reference is not None}
    await refs_store.put(updated.id, updated.org, refs)
    refs = await refs_store.for_visit(updated.id)
    body_out = await _resource(request, principal, updated, refs)
    return fhir_response(body_out, headers=_etag(updated))


def _etag(visit: Visit) -> dict[str, str]:
    return {"ETag": f'W/"{version_of(visit)}"', "Cache-Control": "no-store"}


def _matched_seats(visit: Visit, wanted: AppointmentRequest) -> dict[ParticipantId, Any]:
    """Each asked participant's seat: by its participant-id extension, else in order. Seats
    are neither added nor removed through PUT (book a new Appointment for other people)."""
    seats = list(visit.seats.values())
    if len(wanted.participants) != len(seats):
        raise invalid(
            f"Appointment.participant must list the visit's {len(seats)} participants"
            " (participants cannot be added or removed by PUT)",
            "Appointment.participant",
        )
    matched: dict[ParticipantId, Any] = {}
    for i, asked in enumerate(wanted.participants):
        seat = visit.seats.get(asked.participant) if asked.participant else seats[i]
        if seat is None or seat.role is not asked.role or seat.participant in matched:
            raise invalid(
                f"Appointment.participant[{i}] is not one of the visit's participants"
                " (a participant's role cannot change)",
                f"Appointment.participant[{i}]",
            )
        matched[seat.participant] = asked
    return matched


async def search_appointments(request: web.Request) -> web.Response:
    _negotiate(request)
    for name in request.query:
        if name not in SEARCH_PARAMS:
            raise FhirError(
                400,
                "not-supported",
                f"unknown search parameter {name!r}; known: date, actor, status",
            )
    principal = await _principal(request, Action.READ_VISIT)
    await request.config_dict[appkeys.ACCESS].authorize(
        principal, Action.READ_VISIT, None, client=_client(request)
    )
    if principal.org is None:
        raise FhirError(403, "forbidden", "the token names no organisation")
    bounds = [_date_bound(raw) for raw in request.query.getall("date", [])]
    statuses = _statuses(request.query.getall("status", []))
    refs_store = request.config_dict[appkeys.ACTOR_REFS]
    visits = await request.config_dict[appkeys.STORE].list_by_org(principal.org)
    actor = request.query.get("actor")
    if actor is not None:
        ids = await refs_store.visits_of(principal.org, actor)
        visits = [v for v in visits if v.id in ids]
    chosen = [
        v
        for v in visits
        if (statuses is None or STATUS_OF[v.state] in statuses)
        and all(_in_bound(v, bound) for bound in bounds)
    ]
    chosen.sort(key=lambda v: (v.planned_start is None, v.planned_start or 0.0, v.created_at))
    refs = await refs_store.for_visits([v.id for v in chosen])
    base = request.config_dict[appkeys.SETTINGS].base_url
    entries = [
        {
            "fullUrl": f"{base}/fhir/Appointment/{resource_id(v.id)}",
            "resource": await _resource(request, principal, v, refs.get(v.id, {})),
            "search": {"mode": "match"},
        }
        for v in chosen
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": f"{base}{request.path_qs}"}],
        "entry": entries,
    }
    return fhir_response(bundle, headers={"Cache-Control": "no-store"})


_PREFIXES = ("eq", "ge", "gt", "le", "lt")


def _date_bound(raw: str) -> tuple[str, float, float]:
    """A `date` parameter as (prefix, the day's first second, the next day's), days in
    Denmark's time."""
    prefix = raw[:2] if raw[:2] in _PREFIXES else "eq"
    text = raw[2:] if raw[:2] in _PREFIXES else raw
    try:
        day = parse_day(text)
    except ValueError:
        raise FhirError(
            400, "invalid", "'date' is a day, YYYY-MM-DD, optionally after eq, ge, gt, le or lt"
        ) from None
    start = datetime.datetime.combine(day, datetime.time(), DAY_ZONE)
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), DAY_ZONE)
    return prefix, start.timestamp(), end.timestamp()


def _in_bound(visit: Visit, bound: tuple[str, float, float]) -> bool:
    if visit.planned_start is None:
        return False
    prefix, start, end = bound
    at = visit.planned_start
    return {
        "eq": start <= at < end,
        "ge": at >= start,
        "gt": at >= end,
        "le": at < end,
        "lt": at < start,
    }[prefix]


def _statuses(raw: list[str]) -> set[str] | None:
    if not raw:
        return None
    wanted = {code for value in raw for code in value.split(",")}
    known = set(STATUS_OF.values())
    unknown = wanted - known
    if unknown:
        raise FhirError(400, "invalid", f"'status' is one of {', '.join(sorted(known))}")
    return wanted


# --- the sub-application ------------------------------------------------------------------------


async def _actor_refs(app: web.Application) -> AsyncIterator[None]:
    """The references' table, and the hourly deletion of those of visits that are over."""
    refs = SqlActorRefs(app[appkeys.DATABASE])
    app[appkeys.ACTOR_REFS] = refs

    async def purge() -> None:
        deleted = await refs.purge_finished()
        if deleted:
            logger.info("deleted the EHR references of %d finished seats", deleted)

    periodic = Periodic("actor-refs-purge", PURGE_INTERVAL, purge)
    periodic.start()
    yield
    await periodic.stop()


def setup_fhir(app: web.Application) -> None:
    """Mount the FHIR endpoint at /fhir (after the app's resources are made: its own cleanup
    context runs once the database is open)."""
    fhir = web.Application(middlewares=[outcome_middleware])
    # The root's response hooks (security headers) read the settings of the request's app.
    fhir[appkeys.SETTINGS] = app[appkeys.SETTINGS]
    app.cleanup_ctx.append(_actor_refs)
    fhir.router.add_get("/metadata", capability_statement)
    fhir.router.add_post("/Appointment", create_appointment)
    fhir.router.add_get("/Appointment", search_appointments)
    fhir.router.add_get("/Appointment/{id}", read_appointment)
    fhir.router.add_put("/Appointment/{id}", update_appointment)
    app.add_subapp("/fhir", fhir)
