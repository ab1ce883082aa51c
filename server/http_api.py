"""The JSON API: visits, health and the signaling socket."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rooms.errors import InvalidTransition, RoomsError, VisitNotFound
from rooms.ids import VisitId
from rooms.policy import Action
from rooms.principal import Principal
from rooms.roles import PARTICIPANT_ROLES, Role, Sector
from rooms.visit import Visit, VisitKind
from server import appkeys
from server.clientaddr import client_address
from server.errors import ApiError, status_for
from server.trust import DEFAULT_MAX_LIFETIME
from server.visits import book_visit, invite_links, links_by_role
from signaling.session import Session

#: Revoke for at least as long as any token can live.
MAX_TOKEN_LIFETIME = max(DEFAULT_MAX_LIFETIME.values())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(code: str, message: str, status: int, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.code, exc.message, exc.status)
    except InvalidTransition as exc:
        return _error(exc.code, exc.message, 409, current=exc.current)
    except RoomsError as exc:
        return _error(getattr(exc, "code", "error"), exc.message, status_for(exc))
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            return _error("http-" + str(exc.status), exc.reason, exc.status)
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
        await access.record(
            None, action, visit_id, client_of(request), allowed=False, reason="token-missing"
        )
        raise ApiError("token-missing", "send 'Authorization: Bearer <token>'", 401)
    return await access.authenticate(
        token.strip(), action=action, client=client_of(request), visit=visit_id
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError("malformed-json", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError("invalid-body", "the request body must be a JSON object")
    return body


def _participants_from(body: dict[str, Any]) -> list[tuple[Role, str | None, Sector | None]]:
    raw = body.get("participants")
    if not isinstance(raw, list) or not raw:
        raise ApiError("invalid-field", "'participants' must be a non-empty list")
    out = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise ApiError("invalid-field", "each participant must be an object")
        try:
            role = Role(str(entry.get("role")))
        except ValueError:
            raise ApiError("invalid-field", f"unknown role {entry.get('role')!r}") from None
        if role not in PARTICIPANT_ROLES:
            raise ApiError("invalid-field", f"role {role.value} does not take part in visits")
        name = entry.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 80):
            raise ApiError("invalid-field", "'name' must be a string of at most 80 characters")
        sector_raw = entry.get("sector")
        try:
            sector = Sector(sector_raw) if sector_raw is not None else None
        except ValueError:
            raise ApiError("invalid-field", f"unknown sector {sector_raw!r}") from None
        out.append((role, name, sector))
    return out


async def create_visit(request: web.Request) -> web.Response:
    principal = await principal_for(request, Action.CREATE_VISIT)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.CREATE_VISIT, None, client=client_of(request)
    )
    body = await _json_body(request)
    try:
        kind = VisitKind(body.get("kind", VisitKind.CONSULTATION.value))
    except ValueError:
        raise ApiError("invalid-field", f"unknown visit kind {body.get('kind')!r}") from None
    visit = await book_visit(request.app, principal, kind, _participants_from(body))
    participants = invite_links(request.app, visit)
    return web.json_response(
        {
            "visit": visit.id,
            "state": visit.state.value,
            "links": links_by_role(participants),
            "participants": participants,
        },
        status=201,
    )


async def _visit_for(request: web.Request, action: Action) -> tuple[Principal, Visit]:
    visit_id = request.match_info["visit"]
    principal = await principal_for(request, action, visit_id)
    access = request.app[appkeys.ACCESS]
    try:
        visit = await request.app[appkeys.STORE].get(VisitId(visit_id))
    except VisitNotFound:
        await access.record(
            principal, action, visit_id, client_of(request), allowed=False, reason="visit-not-found"
        )
        raise
    await access.authorize(principal, action, visit, client=client_of(request))
    return principal, visit


async def get_visit(request: web.Request) -> web.Response:
    _principal, visit = await _visit_for(request, Action.READ_VISIT)
    body = visit.to_dict()
    hub = request.app[appkeys.HUBS].hubs.get(visit.id)
    body["connected"] = sorted(hub.sessions) if hub else []
    return web.json_response(body)


async def end_visit(request: web.Request) -> web.Response:
    _principal, visit = await _visit_for(request, Action.END_VISIT)
    await request.app[appkeys.HUBS].end_visit(visit)
    return web.json_response({"visit": visit.id, "state": visit.state.value})


async def invite_participant(request: web.Request) -> web.Response:
    """The host adds a seat (a relative, an interpreter, ...) and gets its invite link."""
    _principal, visit = await _visit_for(request, Action.INVITE)
    if not visit.is_live:
        raise InvalidTransition(f"visit {visit.id} has {visit.state.value}", visit.state.value)
    body = await _json_body(request)
    [(role, name, sector)] = _participants_from({"participants": [body]})
    seat = visit.add_seat(role, name, sector)
    await request.app[appkeys.STORE].save(visit)
    link = next(e for e in invite_links(request.app, visit) if e["participant"] == seat.participant)
    return web.json_response(link, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    principal = await principal_for(request, Action.REVOKE_TOKEN)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.REVOKE_TOKEN, None, client=client_of(request)
    )
    body = await _json_body(request)
    jti = body.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 200:
        raise ApiError("invalid-field", "'jti' must be a token id")
    expires_at = body.get("expires_at", time.time() + MAX_TOKEN_LIFETIME)
    if not isinstance(expires_at, int | float):
        raise ApiError("invalid-field", "'expires_at' must be a Unix time")
    await request.app[appkeys.REVOCATIONS].revoke(jti, float(expires_at))
    closed = request.app[appkeys.HUBS].close_token(jti)
    return web.json_response({"jti": jti, "closed_sessions": closed}, status=201)


def _query_time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ApiError("invalid-query", f"'{name}' must be a Unix time") from None


async def read_audit(request: web.Request) -> web.Response:
    principal = await principal_for(request, Action.READ_AUDIT)
    await request.app[appkeys.ACCESS].authorize(
        principal,
        Action.READ_AUDIT,
        None,
        client=client_of(request),
        visit_id=request.query.get("visit"),
    )
    try:
        limit = min(int(request.query.get("limit", "1000")), 10_000)
    except ValueError:
        raise ApiError("invalid-query", "'limit' must be a whole number") from None
    records = await request.app[appkeys.AUDIT].query(
        visit=request.query.get("visit"),
        subject=request.query.get("subject"),
        since=_query_time(request, "since"),
        until=_query_time(request, "until"),
        limit=limit,
    )
    return web.json_response({"records": [dataclasses.asdict(r) for r in records]})


async def health(request: web.Request) -> web.Response:
    hubs = request.app[appkeys.HUBS].hubs
    return web.json_response(
        {
            "status": "ok",
            "visits": len(hubs),
            "participants": sum(len(h.sessions) for h in hubs.values()),
            "media": request.app[appkeys.SFU].counters.to_dict(),
        }
    )


async def signaling_socket(request: web.Request) -> web.WebSocketResponse:
    # A hard limit well above the protocol's own, so an oversize message gets a precise error
    # from the session (and the socket lives on) rather than aiohttp closing it.
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1024 * 1024, timeout=2)
    await ws.prepare(request)
    session = Session(
        ws, request.app[appkeys.SIGNALING], request.app[appkeys.HUBS], client_of(request)
    )
    await session.run()
    return ws


def setup_api_routes(app: web.Application) -> None:
    app.router.add_post("/api/visits", create_visit)
    app.router.add_get("/api/visits/{visit}", get_visit)
    app.router.add_post("/api/visits/{visit}/end", end_visit)
    app.router.add_post("/api/visits/{visit}/participants", invite_participant)
    app.router.add_post("/api/admin/revocations", revoke_token)
    app.router.add_get("/api/audit", read_audit)
    app.router.add_get("/healthz", health)
    app.router.add_get("/ws", signaling_socket)
