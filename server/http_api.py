"""The JSON API: visits, health and the signaling socket."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rooms.errors import InvalidTransition, RoomsError
from rooms.ids import VisitId
from rooms.policy import Action, authorize
from rooms.principal import Principal
from rooms.roles import PARTICIPANT_ROLES, Role, Sector
from rooms.visit import VisitKind
from server import appkeys
from server.errors import ApiError, status_for
from server.visits import book_visit, invite_links, links_by_role
from signaling.session import Session

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


def authenticate_request(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError("token-missing", "send 'Authorization: Bearer <token>'", 401)
    return request.app[appkeys.VERIFIER].authenticate(token.strip())


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
    principal = authenticate_request(request)
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


async def get_visit(request: web.Request) -> web.Response:
    principal = authenticate_request(request)
    visit = await request.app[appkeys.STORE].get(VisitId(request.match_info["visit"]))
    authorize(principal, Action.READ_VISIT, visit)
    body = visit.to_dict()
    hub = request.app[appkeys.HUBS].hubs.get(visit.id)
    body["connected"] = sorted(hub.sessions) if hub else []
    return web.json_response(body)


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
    session = Session(ws, request.app[appkeys.SIGNALING], request.app[appkeys.HUBS])
    await session.run()
    return ws


def setup_api_routes(app: web.Application) -> None:
    app.router.add_post("/api/visits", create_visit)
    app.router.add_get("/api/visits/{visit}", get_visit)
    app.router.add_get("/healthz", health)
    app.router.add_get("/ws", signaling_socket)
