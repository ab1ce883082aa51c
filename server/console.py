"""The staff console at /console: sign-in (OpenID Connect, or a one-time link), the page, its
live feed, QR codes and calendar invites. Booking, rescheduling and cancelling go through the
JSON API (/api/visits), which takes the console's session cookie with its CSRF header."""

from __future__ import annotations

import datetime
import re
import time

import icalendar
import jwt
import segno
from aiohttp import web

from rooms.errors import AuthenticationFailed
from rooms.ids import VISIT_ID_PATTERN, ParticipantId, VisitId
from rooms.policy import Action
from rooms.principal import Principal
from rooms.roles import Role
from server import appkeys
from server.clientaddr import client_address
from server.console_feed import stream
from server.console_session import (
    CONSOLE_ROLES,
    clear_session_cookie,
    console_principal,
    require_console,
    same_origin,
    set_session_cookie,
    sign_session,
    use_link,
)
from server.errors import ApiError
from server.headers import page_policy, reached_over_tls
from server.oidc import PendingSignIn, SignInFailed
from server.pages import LANGUAGES
from server.visits import invite_links
from signaling.safejson import JsonRefused, load_json

PENDING_COOKIE = "sv_console_signin"
PENDING_SECONDS = 600
PENDING_AUDIENCE_SUFFIX = ":console-signin"
VISIT_ID = re.compile(VISIT_ID_PATTERN)
MAX_URL = 4096
#: An evaluator's report link lives as long as a console session's first hour.
REPORT_TOKEN_SECONDS = 3600


def _client(request: web.Request) -> str | None:
    return client_address(request, request.app[appkeys.SETTINGS].trusted_proxies)


def _page(request: web.Request, **context: object) -> web.Response:
    lang = request.query.get("lang", "da")
    html = (
        request.app[appkeys.TEMPLATES]
        .get_template("console.html")
        .render(lang=lang if lang in LANGUAGES else "da", **context)
    )
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            "Content-Security-Policy": page_policy(request.app[appkeys.SETTINGS].frame_ancestors),
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


async def console_page(request: web.Request) -> web.Response:
    """The console for a signed-in staff member; otherwise the ways to sign in."""
    principal: Principal | None = None
    try:
        principal = await console_principal(request, Action.READ_VISIT)
    except AuthenticationFailed:
        principal = None  # an expired or revoked session: sign in again
    if principal is None or principal.role not in CONSOLE_ROLES:
        providers = request.app[appkeys.OIDC].providers
        return _page(
            request,
            signed_in=False,
            providers=sorted(providers),
            signin_error=request.query.get("signin_error", "")[:64],
        )
    _, csrf = await require_console(request, Action.READ_VISIT)
    report_url = None
    if principal.role is Role.EVALUATOR:
        token = request.app[appkeys.ISSUER].sign(
            sub=principal.subject,
            role=principal.role,
            sector=principal.sector,
            lifetime=REPORT_TOKEN_SECONDS,
            org=principal.org,
        )
        report_url = f"/evaluation#{token}"
    return _page(
        request,
        signed_in=True,
        csrf=csrf,
        role=principal.role.value,
        org=principal.org or "",
        staff_name=principal.name or "",
        report_url=report_url,
    )


def _callback_url(request: web.Request) -> str:
    return f"{request.app[appkeys.SETTINGS].base_url}/console/callback"


def _signin_error(code: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/console?signin_error={code}")


async def oidc_login(request: web.Request) -> web.Response:
    """Send the browser to the chosen identity provider, with PKCE, state and nonce."""
    providers = request.app[appkeys.OIDC].providers
    iss = request.query.get("iss")
    if iss is None and len(providers) == 1:
        iss = next(iter(providers))
    provider = providers.get(iss or "")
    if provider is None:
        raise ApiError("unknown-issuer", "sign in at one of the issuers the console offers")
    try:
        url, pending = await provider.begin(
            request.app[appkeys.OIDC].http(), _callback_url(request)
        )
    except SignInFailed as exc:
        raise _signin_error(exc.code) from None
    issuer = request.app[appkeys.ISSUER]
    now = int(time.time())
    cookie = jwt.encode(
        {
            "iss": issuer.iss,
            "aud": issuer.audience + PENDING_AUDIENCE_SUFFIX,
            "iat": now,
            "exp": now + PENDING_SECONDS,
            "idp": pending.iss,
            "state": pending.state,
            "nonce": pending.nonce,
            "verifier": pending.verifier,
        },
        issuer.key.private_key,
        algorithm="ES256",
    )
    response = web.HTTPFound(url)
    response.set_cookie(
        PENDING_COOKIE,
        cookie,
        max_age=PENDING_SECONDS,
        path="/console/callback",
        httponly=True,
        secure=reached_over_tls(request),
        samesite="Lax",
    )
    raise response


def _pending(request: web.Request) -> PendingSignIn | None:
    raw = request.cookies.get(PENDING_COOKIE)
    if not raw:
        return None
    issuer = request.app[appkeys.ISSUER]
    try:
        claims = jwt.decode(
            raw,
            key=issuer.key.public_key,
            algorithms=["ES256"],
            audience=issuer.audience + PENDING_AUDIENCE_SUFFIX,
            issuer=issuer.iss,
        )
        return PendingSignIn(
            str(claims["idp"]), str(claims["state"]), str(claims["nonce"]), str(claims["verifier"])
        )
    except (jwt.PyJWTError, KeyError):
        return None


async def oidc_callback(request: web.Request) -> web.Response:
    """The provider sends the browser back with a code: exchange it, verify the ID token, and
    open a console session for the staff member it names."""
    pending = _pending(request)
    state, code = request.query.get("state", ""), request.query.get("code", "")
    if pending is None or not state or state != pending.state:
        raise _signin_error("signin-state-mismatch")
    if not code:
        raise _signin_error("signin-refused")
    provider = request.app[appkeys.OIDC].providers.get(pending.iss)
    if provider is None:
        raise _signin_error("unknown-issuer")
    access = request.app[appkeys.ACCESS]
    try:
        principal = await provider.finish(
            request.app[appkeys.OIDC].http(),
            request.app[appkeys.VERIFIER],
            pending,
            code,
            _callback_url(request),
        )
    except SignInFailed as exc:
        await access.refuse_request(Action.READ_VISIT, _client(request), exc.code)
        raise _signin_error(exc.code) from None
    response = await _open_session(request, principal)
    response.del_cookie(PENDING_COOKIE, path="/console/callback")
    raise response


async def _open_session(request: web.Request, principal: Principal) -> web.HTTPSeeOther:
    access = request.app[appkeys.ACCESS]
    if principal.role not in CONSOLE_ROLES or principal.org is None:
        await access.record(
            principal,
            Action.READ_VISIT,
            None,
            _client(request),
            allowed=False,
            reason="console-role-not-allowed",
        )
        raise _signin_error("console-role-not-allowed")
    await access.record(
        principal, Action.READ_VISIT, None, _client(request), allowed=True, reason="console-sign-in"
    )
    token, _csrf = sign_session(request.app[appkeys.ISSUER], principal)
    response = web.HTTPSeeOther("/console")
    set_session_cookie(request, response, token)
    return response


async def link_signin(request: web.Request) -> web.Response:
    """A one-time sign-in link's token (the page posts it from the URL fragment)."""
    if not same_origin(request):
        raise ApiError("csrf-failed", "sign in from this server's own page", 403)
    try:
        body = load_json(await request.read())
    except JsonRefused as exc:
        raise ApiError(exc.code, exc.message) from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise ApiError("invalid-body", 'send {"token": "<the link\'s token>"}')
    access = request.app[appkeys.ACCESS]
    client = _client(request)
    try:
        principal = await use_link(request, token)
    except AuthenticationFailed as exc:
        await access.refuse_request(Action.READ_VISIT, client, exc.code)
        raise
    redirect = await _open_session(request, principal)
    response = web.json_response({"signed_in": True, "role": principal.role.value})
    for morsel in redirect.cookies.values():
        response.cookies[morsel.key] = morsel
    return response


async def logout(request: web.Request) -> web.Response:
    principal, _ = await require_console(request, Action.READ_VISIT)
    if principal.token_id is not None and principal.expires_at is not None:
        await request.app[appkeys.REVOCATIONS].revoke(principal.token_id, principal.expires_at)
    response = web.json_response({"signed_in": False})
    clear_session_cookie(response)
    return response


async def events(request: web.Request) -> web.StreamResponse:
    """The organisation's visits, live, for signed-in clinicians (Server-Sent Events)."""
    principal, _ = await require_console(request, Action.READ_VISIT)
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.READ_VISIT, None, client=_client(request)
    )
    assert principal.org is not None
    return await stream(
        request,
        request.app[appkeys.STORE],
        request.app[appkeys.EVENTS],
        request.app[appkeys.CONSOLE],
        principal.org,
        principal.expires_at,
    )


async def qr_code(request: web.Request) -> web.Response:
    """An invite link as a QR code (SVG, as a data URI), for a phone or tablet to open."""
    await require_console(request, Action.READ_VISIT)
    try:
        body = load_json(await request.read())
    except JsonRefused as exc:
        raise ApiError(exc.code, exc.message) from None
    url = body.get("url") if isinstance(body, dict) else None
    prefix = request.app[appkeys.SETTINGS].base_url + "/v/"
    if not isinstance(url, str) or not url.startswith(prefix) or len(url) > MAX_URL:
        raise ApiError("invalid-field", "'url' must be an invite link of this server")
    qr = segno.make(url, error="m", micro=False)
    return web.json_response(
        {"svg": qr.svg_data_uri(scale=4, border=2)}, headers={"Cache-Control": "no-store"}
    )


async def invite_ics(request: web.Request) -> web.Response:
    """An iCalendar (RFC 5545) invite for one seat of a visit, with that seat's link. It holds
    no name: only the kind of visit, its time and the link."""
    principal, _ = await require_console(request, Action.INVITE)
    visit_id = request.match_info["visit"]
    if not VISIT_ID.fullmatch(visit_id):
        raise ApiError("visit-not-found", "no such visit", 404)
    visit = await request.app[appkeys.STORE].get(VisitId(visit_id))
    await request.app[appkeys.ACCESS].authorize(
        principal, Action.INVITE, visit, client=_client(request)
    )
    participant = ParticipantId(request.query.get("participant", ""))
    if participant not in visit.seats:
        raise ApiError("seat-not-found", "no such participant in the visit", 404)
    if visit.planned_start is None:
        raise ApiError("visit-not-planned", "the visit has no planned time", 409)
    link = next(e for e in invite_links(request.app, visit) if e["participant"] == participant)
    body = _calendar(
        visit.id,
        participant,
        visit.kind.value,
        visit.planned_start,
        visit.planned_minutes,
        link["url"],
        visit.state.value,
    )
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="videobesog-{visit.id}.ics"',
            "Cache-Control": "no-store",
        },
    )


KIND_TITLES = {
    "consultation": "Videokonsultation",
    "assisted": "Assisteret skærmbesøg",
    "conference": "Videokonference",
}


def _calendar(
    visit: str, participant: str, kind: str, start: float, minutes: int, url: str, state: str
) -> bytes:
    begin = datetime.datetime.fromtimestamp(start, datetime.UTC)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//screenvisit//console//DA")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = icalendar.Event()
    event.add("uid", f"{visit}-{participant}@screenvisit")
    event.add("dtstamp", datetime.datetime.now(datetime.UTC))
    event.add("dtstart", begin)
    event.add("dtend", begin + datetime.timedelta(minutes=minutes))
    event.add("summary", KIND_TITLES.get(kind, "Videobesøg"))
    event.add(
        "description",
        "Åbn linket i en browser på telefon, tablet eller computer (ingen app):\n"
        f"{url}\n\nOpen the link in a browser (no app needed).",
    )
    event.add("url", url)
    event.add("status", "CANCELLED" if state == "cancelled" else "CONFIRMED")
    calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


def setup_console_routes(app: web.Application) -> None:
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/login", oidc_login)
    app.router.add_get("/console/callback", oidc_callback)
    app.router.add_post("/console/session", link_signin)
    app.router.add_post("/console/logout", logout)
    app.router.add_get("/console/events", events)
    app.router.add_post("/console/qr", qr_code)
    app.router.add_get("/console/visits/{visit}/invite.ics", invite_ics)
