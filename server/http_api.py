"""The JSON API: visits, health and the signaling socket."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rooms.durable import DATABASE_DOWN
from rooms.errors import InvalidTransition, NotPermitted, RoomsError, VisitNotFound
from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import VISIT_ID_PATTERN, VisitId
from rooms.outcomes import SURVEY_QUESTIONS, OutcomeRejected
from rooms.policy import Action
from rooms.principal import Principal
from rooms.roles import PARTICIPANT_ROLES, Role, Sector
from rooms.visit import (
    DEFAULT_MAX_PARTICIPANTS,
    DEFAULT_PLANNED_MINUTES,
    MAX_PARTICIPANTS,
    MAX_PLANNED_MINUTES,
    MIN_PARTICIPANTS,
    Seat,
    Visit,
    VisitKind,
    VisitState,
)
from server import appkeys
from server.clientaddr import client_address
from server.errors import ApiError, status_for
from server.openapi import openapi_document
from server.reports import EXPORTS, Filters, ReportUnavailable
from server.timeparse import parse_when
from server.trust import DEFAULT_MAX_LIFETIME
from server.visits import (
    EARLIEST_TIME,
    KEEP,
    LATEST_TIME,
    MAX_NAME,
    BookingChange,
    FieldError,
    Keep,
    book_visit,
    ensure_live,
    invite_links,
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
MAX_AUDIT_LIMIT = 10_000
MAX_QUERY_TEXT = 200

#: Fields of POST /api/visits. Nothing else is accepted: a visit holds no free text about the
#: citizen (no title, reason or notes), so such a field is refused rather than dropped.
CREATE_FIELDS = (
    "kind",
    "participants",
    "planned_start",
    "planned_minutes",
    "waiting_room",
    "max_participants",
)
#: Fields PATCH /api/visits/{visit} may change.
BOOKING_FIELDS = ("kind", "planned_start", "planned_minutes", "waiting_room", "max_participants")
PARTICIPANT_FIELDS = ("role", "name", "sector")

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(
    code: str,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, **extra}}, status=status, headers=headers
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


def _unix_time(value: object, earliest: float = EARLIEST_TIME) -> float | None:
    """A number (Unix time) or an ISO 8601 string with a timezone, from `earliest` (default
    2000) to 2100; None when `value` is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str) and len(value) <= 64:
        try:
            moment = datetime.datetime.fromisoformat(value)
            if moment.tzinfo is None or moment.utcoffset() is None:
                return None
            seconds = moment.timestamp()
        except (ValueError, OverflowError):
            return None
    else:
        return None
    if not math.isfinite(seconds) or not earliest <= seconds <= LATEST_TIME:
        return None
    return seconds


def _whole(value: object, low: int, high: int) -> int | None:
    """`value` when it is a whole number (not a boolean) from `low` to `high`, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _refuse_unknown(body: dict[str, Any], allowed: tuple[str, ...], prefix: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise FieldError(
                prefix + str(key),
                f"unknown field '{prefix}{key}'; accepted: {', '.join(allowed)}"
                " (a visit holds no free text about the citizen)",
            )


def _kind(value: object) -> VisitKind:
    try:
        return VisitKind(value) if isinstance(value, str) else VisitKind("")
    except ValueError:
        kinds = ", ".join(k.value for k in VisitKind)
        raise FieldError("kind", f"'kind' must be one of {kinds}") from None


def _planned_start(value: object) -> float | None:
    if value is None:
        return None
    seconds = _unix_time(value)
    if seconds is None:
        raise FieldError(
            "planned_start",
            "'planned_start' must be a Unix time or an ISO 8601 time with a timezone"
            " (e.g. 2030-05-01T09:30:00+02:00), between 2000 and 2100, or null",
        )
    return seconds


def _planned_minutes(value: object) -> int:
    minutes = _whole(value, 1, MAX_PLANNED_MINUTES)
    if minutes is None:
        raise FieldError(
            "planned_minutes",
            f"'planned_minutes' must be a whole number from 1 to {MAX_PLANNED_MINUTES}",
        )
    return minutes


def _waiting_room(value: object) -> bool:
    if not isinstance(value, bool):
        raise FieldError("waiting_room", "'waiting_room' must be true or false")
    return value


def _max_participants(value: object) -> int:
    limit = _whole(value, MIN_PARTICIPANTS, MAX_PARTICIPANTS)
    if limit is None:
        raise FieldError(
            "max_participants",
            f"'max_participants' must be a whole number from {MIN_PARTICIPANTS}"
            f" to {MAX_PARTICIPANTS}",
        )
    return limit


def _participant(entry: object, prefix: str) -> tuple[Role, str | None, Sector | None]:
    """One seat request; `prefix` names where it is in the body (e.g. "participants[2].")."""
    if not isinstance(entry, dict):
        raise FieldError(prefix.rstrip("."), f"'{prefix.rstrip('.')}' must be an object")
    _refuse_unknown(entry, PARTICIPANT_FIELDS, prefix)
    raw_role = entry.get("role")
    try:
        role = Role(raw_role) if isinstance(raw_role, str) else Role("")
    except ValueError:
        roles = ", ".join(sorted(r.value for r in PARTICIPANT_ROLES))
        raise FieldError(prefix + "role", f"'{prefix}role' must be one of {roles}") from None
    if role not in PARTICIPANT_ROLES:
        raise FieldError(prefix + "role", f"'{prefix}role': {role.value} does not take part")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise FieldError(
            prefix + "name", f"'{prefix}name' must be a string of at most {MAX_NAME} characters"
        )
    raw_sector = entry.get("sector")
    try:
        sector = Sector(raw_sector) if isinstance(raw_sector, str) else None
    except ValueError:
        sector = None
    if raw_sector is not None and sector is None:
        sectors = ", ".join(s.value for s in Sector)
        raise FieldError(prefix + "sector", f"'{prefix}sector' must be one of {sectors}")
    return role, name, sector


def _participants_from(body: dict[str, Any]) -> list[tuple[Role, str | None, Sector | None]]:
    raw = body.get("participants")
    if not isinstance(raw, list) or not raw:
        raise FieldError("participants", "'participants' must be a non-empty list")
    if len(raw) > MAX_PARTICIPANTS:
        raise FieldError(
            "participants", f"'participants' may list at most {MAX_PARTICIPANTS} seats"
        )
    return [_participant(entry, f"participants[{i}].") for i, entry in enumerate(raw)]


def _booking_change(body: dict[str, Any]) -> BookingChange:
    _refuse_unknown(body, BOOKING_FIELDS)
    if not body:
        raise ApiError(
            "invalid-body", f"name at least one field to change: {', '.join(BOOKING_FIELDS)}"
        )
    planned_start: float | Keep | None = KEEP
    if "planned_start" in body:
        planned_start = _planned_start(body["planned_start"])
    return BookingChange(
        kind=_kind(body["kind"]) if "kind" in body else None,
        planned_start=planned_start,
        planned_minutes=(
            _planned_minutes(body["planned_minutes"]) if "planned_minutes" in body else None
        ),
        waiting_room=_waiting_room(body["waiting_room"]) if "waiting_room" in body else None,
        max_participants=(
            _max_participants(body["max_participants"]) if "max_participants" in body else None
        ),
    )


def _query_time(request: web.Request, name: str, earliest: float = EARLIEST_TIME) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value: object = raw
    try:
        value = float(raw)
    except ValueError:
        pass
    seconds = _unix_time(value, earliest)
    if seconds is None:
        since = "1970" if earliest <= 0 else "2000"
        raise ApiError(
            "invalid-query",
            f"'{name}' must be a Unix time or an ISO 8601 time with a timezone,"
            f" between {since} and 2100",
        )
    return seconds


def _is_short_text(text: str) -> bool:
    return len(text) <= MAX_QUERY_TEXT and text.isprintable()


def _query_text(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is not None and not _is_short_text(raw):
        raise ApiError(
            "invalid-query", f"'{name}' must be printable text of at most {MAX_QUERY_TEXT}"
        )
    return raw


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
    body = await _json_body(request, principal, Action.CREATE_VISIT)
    _refuse_unknown(body, CREATE_FIELDS)
    kind = _kind(body.get("kind", VisitKind.CONSULTATION.value))
    planned_start = _planned_start(body.get("planned_start"))
    planned_minutes = _planned_minutes(body.get("planned_minutes", DEFAULT_PLANNED_MINUTES))
    waiting_room = _waiting_room(body.get("waiting_room", True))
    max_participants = _max_participants(body.get("max_participants", DEFAULT_MAX_PARTICIPANTS))
    seats = _participants_from(body)
    visit = await book_visit(
        request.app,
        principal,
        kind,
        seats,
        planned_start=planned_start,
        planned_minutes=planned_minutes,
        waiting_room=waiting_room,
        max_participants=max_participants,
    )
    participants = invite_links(request.app, visit)
    return web.json_response(
        {
            "visit": visit.id,
            "state": visit.state.value,
            **_booking(visit),
            "links": links_by_role(participants),
            "participants": participants,
        },
        status=201,
    )


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
    raw_state = request.query.get("state")
    state: VisitState | None = None
    if raw_state is not None:
        try:
            state = VisitState(raw_state)
        except ValueError:
            states = ", ".join(s.value for s in VisitState)
            raise ApiError("invalid-query", f"'state' must be one of {states}") from None
    start, end = _query_time(request, "from"), _query_time(request, "to")
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
    return web.json_response({"visits": [v.to_dict() for v in chosen]})


async def _visit_for(
    request: web.Request, action: Action, principal: Principal | None = None
) -> tuple[Principal, Visit]:
    """The visit of the route and the authenticated principal (`principal` when already
    authenticated), authorized for `action`."""
    visit_id = request.match_info["visit"]
    well_formed = VISIT_ID.fullmatch(visit_id) is not None
    # A malformed id is never written to the audit log: it may be anything at all.
    if principal is None:
        principal = await principal_for(request, action, visit_id if well_formed else None)
    access = request.app[appkeys.ACCESS]
    try:
        if not well_formed:
            raise VisitNotFound("no such visit")
        visit = await request.app[appkeys.STORE].get(VisitId(visit_id))
    except VisitNotFound:
        await access.record(
            principal,
            action,
            visit_id if well_formed else None,
            client_of(request),
            allowed=False,
            reason="visit-not-found",
        )
        raise
    await access.authorize(principal, action, visit, client=client_of(request))
    return principal, visit


async def get_visit(request: web.Request) -> web.Response:
    _principal, visit = await _visit_for(request, Action.READ_VISIT)
    body = visit.to_dict()
    elsewhere = await _on_owner(request, visit.id, "connected")
    if elsewhere is not None:
        body["connected"] = elsewhere["connected"]
    else:
        hub = request.app[appkeys.HUBS].hubs.get(visit.id)
        body["connected"] = sorted(hub.sessions) if hub else []
    return web.json_response(body)


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
    change = _booking_change(await _json_body(request, principal, Action.INVITE))
    updated = await update_visit(request.app, visit.id, change.apply)
    request.app[appkeys.JANITOR].watch(updated)
    return web.json_response(updated.to_dict())


async def cancel_visit(request: web.Request) -> web.Response:
    """Cancel a scheduled or open visit; anyone already connected is told and disconnected."""
    principal, visit = await _visit_for(request, Action.END_VISIT)
    cancelled = await update_visit(request.app, visit.id, Visit.cancel)
    if await _on_owner(request, visit.id, "close-visit", reason="visit-cancelled") is None:
        hub = request.app[appkeys.HUBS].hubs.get(visit.id)
        if hub is not None:
            await hub.close_for_cancel("visit-cancelled")
    await request.app[appkeys.EVENTS].append(
        VisitEvent(
            visit=cancelled.id,
            kind=EventKind.VISIT_CANCELLED,
            role=principal.role.value,
            sector=principal.sector.value,
            org=cancelled.org,
        )
    )
    return web.json_response({"visit": cancelled.id, "state": cancelled.state.value})


async def end_visit(request: web.Request) -> web.Response:
    _principal, visit = await _visit_for(request, Action.END_VISIT)
    if visit.state is VisitState.ENDED:
        raise InvalidTransition(f"visit {visit.id} has already ended", visit.state.value)
    elsewhere = await _on_owner(request, visit.id, "end-visit")
    if elsewhere is not None:
        return web.json_response({"visit": visit.id, "state": elsewhere["state"]})
    await request.app[appkeys.HUBS].end_visit(visit)
    return web.json_response({"visit": visit.id, "state": visit.state.value})


async def reissue_links(request: web.Request) -> web.Response:
    """New invite links for every seat, for the host to pass on (the server sends no SMS or
    mail). Links issued before stay valid until they expire or are revoked."""
    _principal, visit = await _visit_for(request, Action.INVITE)
    ensure_live(visit)
    # Recorded before the links go out, so that they open after any loss of live state.
    visit = await update_visit(request.app, visit.id, ensure_live)
    participants = invite_links(request.app, visit)
    return web.json_response(
        {
            "visit": visit.id,
            "state": visit.state.value,
            "links": links_by_role(participants),
            "participants": participants,
        }
    )


async def invite_participant(request: web.Request) -> web.Response:
    """The host adds a seat (a relative, an interpreter, ...) and gets its invite link."""
    principal, visit = await _visit_for(request, Action.INVITE)
    ensure_live(visit)
    body = await _json_body(request, principal, Action.INVITE)
    role, name, sector = _participant(body, "")
    added: list[Seat] = []

    def add(fresh: Visit) -> None:
        ensure_live(fresh)
        added.append(fresh.add_seat(role, name, sector))

    updated = await update_visit(request.app, visit.id, add)
    seat = added[-1]  # the store may have run `add` more than once; the last one was stored
    await record_invited(request.app, updated, seat)
    links = invite_links(request.app, updated)
    link = next(e for e in links if e["participant"] == seat.participant)
    return web.json_response(link, status=201)


async def record_outcome(request: web.Request) -> web.Response:
    """The host records the clinical outcome (a code from the configured list, and an optional
    note that stays out of every evaluation export)."""
    principal, visit = await _visit_for(request, Action.RECORD_OUTCOME)
    body = await _json_body(request, principal, Action.RECORD_OUTCOME)
    outcome, note = body.get("outcome"), body.get("note")
    unknown = set(body) - {"outcome", "note"}
    if unknown:
        raise ApiError("invalid-field", f"unknown field(s) {sorted(unknown)}")
    if not isinstance(outcome, str) or (note is not None and not isinstance(note, str)):
        raise ApiError("invalid-field", "'outcome' must be a string, and 'note' one if given")
    seat = visit.seats.get(principal.participant) if principal.participant else None
    try:
        await request.app[appkeys.OUTCOMES].record_outcome(
            visit.id, visit.org, seat, principal.role.value, principal.sector.value, outcome, note
        )
    except OutcomeRejected as exc:
        raise ApiError(exc.code, exc.message) from None
    return web.json_response({"visit": visit.id, "outcome": outcome}, status=201)


async def answer_survey(request: web.Request) -> web.Response:
    """The citizen's three optional questions (1-5), with their own link, also after the visit."""
    principal, visit = await _visit_for(request, Action.ANSWER_SURVEY)
    body = await _json_body(request, principal, Action.ANSWER_SURVEY)
    assert principal.participant is not None  # the SEAT scope made sure of it
    try:
        answers = await request.app[appkeys.OUTCOMES].record_survey(
            visit.id, visit.org, visit.seats[principal.participant], body
        )
    except OutcomeRejected as exc:
        raise ApiError(exc.code, exc.message) from None
    return web.json_response(
        {"visit": visit.id, "answers": dict(zip(SURVEY_QUESTIONS, answers, strict=True))},
        status=201,
    )


#: A planned visit's link opens the call this long before the planned start; earlier, the join
#: page says when to come back (and opens the call by itself at that time).
OPENS_BEFORE_START = 15 * 60


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
    planned = visit.planned_start
    return web.json_response(
        {
            "visit": visit.id,
            "state": visit.state.value,
            "kind": visit.kind.value,
            "role": visit.seats[principal.participant].role.value,
            "planned_start": planned,
            "opens_at": None if planned is None else planned - OPENS_BEFORE_START,
            "now": time.time(),
            # For the pre-call connection test (UDP reachability through STUN/TURN).
            "ice_servers": [s.to_browser() for s in request.app[appkeys.SETTINGS].ice_servers],
        },
        headers={"Cache-Control": "no-store"},
    )


def _evaluation_filters(request: web.Request) -> Filters:
    def when(name: str) -> float | None:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return None
        try:
            return float(raw)
        except ValueError:
            pass
        try:
            return parse_when(raw, time.time())
        except ValueError:
            raise ApiError(
                "invalid-query",
                f"'{name}' is a Unix time, an ISO date or a period back from now (7d)",
            ) from None

    kind = request.query.get("kind") or None
    sector = request.query.get("sector") or None
    if kind is not None and kind not in {k.value for k in VisitKind}:
        raise ApiError("invalid-query", f"unknown visit kind {kind!r}")
    if sector is not None and sector not in {s.value for s in Sector}:
        raise ApiError("invalid-query", f"unknown sector {sector!r}")
    return Filters(since=when("from"), until=when("to"), kind=kind, sector=sector)


async def _evaluator(request: web.Request) -> tuple[Principal, str, Filters]:
    principal = await principal_for(request, Action.READ_EVALUATION)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.READ_EVALUATION, None, client=client_of(request)
    )
    assert principal.org is not None  # staff tokens name their organisation
    return principal, principal.org, _evaluation_filters(request)


async def evaluation_report(request: web.Request) -> web.Response:
    """The aggregated evaluation of the evaluator's organisation, pseudonymous (built off the
    loop: in a worker process, `server.reports.ReportWorkers`)."""
    _principal, org, filters = await _evaluator(request)
    try:
        visits, built = await request.app[appkeys.REPORTS].report(org, filters)
    except ReportUnavailable as exc:
        raise ApiError("report-unavailable", str(exc), status=503) from None
    return web.json_response({"org": org, "visits": visits, "report": built.to_dict()})


async def evaluation_export(request: web.Request) -> web.Response:
    """CSV, JSON or FHIR R4 (a Bundle of Encounter and QuestionnaireResponse resources)."""
    fmt = request.query.get("format", "csv")
    if fmt not in EXPORTS:
        raise ApiError("invalid-query", f"'format' is one of {', '.join(EXPORTS)}")
    _principal, org, filters = await _evaluator(request)
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
    body = await _json_body(request, principal, Action.REVOKE_TOKEN)
    _refuse_unknown(body, ("jti", "expires_at"))
    jti = body.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 200 or not jti.isprintable():
        raise FieldError("jti", "'jti' must be a token id (at most 200 printable characters)")
    expires_at = _unix_time(body.get("expires_at", time.time() + MAX_TOKEN_LIFETIME), 0.0)
    if expires_at is None:
        raise FieldError("expires_at", "'expires_at' must be a Unix time before 2100")
    await request.app[appkeys.REVOCATIONS].revoke(jti, expires_at)
    closed = request.app[appkeys.HUBS].close_token(jti)
    try:
        await request.app[appkeys.NODE].broadcast(
            {"type": "revoked", "jti": jti, "expires_at": expires_at}
        )
    except BusUnavailable:
        # Stored: the other nodes refuse the token once they reload (at their next start).
        logger.warning("revocation not announced to the other nodes (bus unavailable)")
    return web.json_response({"jti": jti, "closed_sessions": closed}, status=201)


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
    return web.json_response({"node": node.id, "draining": True, "visits": visits}, status=202)


async def read_audit(request: web.Request) -> web.Response:
    principal = await principal_for(request, Action.READ_AUDIT)
    visit = request.query.get("visit")
    await request.app[appkeys.ACCESS].authorize(
        principal,
        Action.READ_AUDIT,
        None,
        client=client_of(request),
        visit_id=visit if visit is not None and _is_short_text(visit) else None,
    )
    try:
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise ApiError(
            "invalid-query", f"'limit' must be a whole number from 1 to {MAX_AUDIT_LIMIT}"
        )
    records = await request.app[appkeys.AUDIT].query(
        visit=_query_text(request, "visit"),
        subject=_query_text(request, "subject"),
        since=_query_time(request, "since", 0.0),
        until=_query_time(request, "until", 0.0),
        limit=limit,
    )
    return web.json_response({"records": [dataclasses.asdict(r) for r in records]})


async def health(request: web.Request) -> web.Response:
    hubs = request.app[appkeys.HUBS].hubs
    node = request.app[appkeys.NODE]
    reasons = request.app[appkeys.DURABLE].reasons()
    status = "draining" if node.draining else "degraded" if reasons else "ok"
    return web.json_response(
        {
            "status": status,
            "reasons": reasons,
            "node": node.id,
            "visits": len(hubs),
            "participants": sum(h.connected() for h in hubs.values()),
            "media": request.app[appkeys.SFU].counters.to_dict(),
            # Every asyncio task alive in this process: flat while visits come and go.
            "tasks": len(asyncio.all_tasks()),
        }
    )


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


async def openapi_json(request: web.Request) -> web.Response:
    """The API's OpenAPI 3.0 description (public: it says what the API is, not what it holds)."""
    return web.json_response(openapi_document())


def setup_api_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_post("/api/visits", create_visit)
    app.router.add_get("/api/visits", list_visits)
    app.router.add_get("/api/visits/{visit}", get_visit)
    app.router.add_patch("/api/visits/{visit}", patch_visit)
    app.router.add_post("/api/visits/{visit}/cancel", cancel_visit)
    app.router.add_post("/api/visits/{visit}/end", end_visit)
    app.router.add_post("/api/visits/{visit}/outcome", record_outcome)
    app.router.add_post("/api/visits/{visit}/survey", answer_survey)
    app.router.add_get("/api/visits/{visit}/link", check_link)
    app.router.add_post("/api/visits/{visit}/links", reissue_links)
    app.router.add_post("/api/visits/{visit}/participants", invite_participant)
    app.router.add_post("/api/admin/revocations", revoke_token)
    app.router.add_post("/api/admin/drain", drain_node)
    app.router.add_get("/api/audit", read_audit)
    app.router.add_get("/api/evaluation/report", evaluation_report)
    app.router.add_get("/api/evaluation/export", evaluation_export)
    app.router.add_get("/healthz", health)
    app.router.add_get("/ws", signaling_socket)
