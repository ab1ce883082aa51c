"""The staff console's session: a cookie holding a short-lived token this server signed.

The cookie is HttpOnly, SameSite=Lax, and Secure when the request came over TLS. Its token is
an ordinary staff token of the server's own issuer (so revocation, the audit log and the policy
table apply as to any bearer token) with two more claims: `console` (true) and `csrf`, a random
value the console page repeats in the `X-CSRF-Token` header of every request that changes
something. A request whose cookie is its only credential and whose method is not safe is refused
(`csrf-failed`, 403) without that header, or when its `Origin` is another site's.

Sign-in links (`screenvisit console-link`) carry a token of another audience (so the API never
takes one) that opens one session, once: its jti is recorded on first use (migration 10).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from aiohttp import web

from rooms.errors import AuthenticationFailed
from rooms.policy import Action
from rooms.principal import Principal
from rooms.roles import CONSOLE_ROLES as CONSOLE_ROLES  # with the roles, for server/cli.py
from rooms.roles import DEFAULT_SECTOR, Role, Sector
from rooms.sql import Database
from server import appkeys
from server.auth import TokenIssuer
from server.clientaddr import client_address
from server.errors import ApiError
from server.headers import reached_over_tls

COOKIE = "sv_console"
#: Hours of a console session; a staff token may live 12 h (server/trust.py).
SESSION_SECONDS = 8 * 3600
#: Minutes a sign-in link printed by `screenvisit console-link` stays usable.
LINK_SECONDS = 10 * 60
LINK_AUDIENCE_SUFFIX = ":console-link"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def sign_session(issuer: TokenIssuer, principal: Principal) -> tuple[str, str]:
    """A session token for `principal` and its CSRF value."""
    csrf = secrets.token_urlsafe(24)
    token = issuer.sign(
        sub=principal.subject,
        role=principal.role,
        sector=principal.sector,
        lifetime=SESSION_SECONDS,
        org=principal.org,
        name=principal.name,
        extra={"console": True, "csrf": csrf},
    )
    return token, csrf


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        secure=reached_over_tls(request),
        samesite="Lax",
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def _session_claims(request: web.Request) -> tuple[str, dict[str, Any]] | None:
    """The cookie's token and its (not yet verified) claims, when it looks like our session."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 8192:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    own = request.app[appkeys.ISSUER].iss
    if claims.get("iss") != own or claims.get("console") is not True:
        return None
    return token, claims


def same_origin(request: web.Request) -> bool:
    """No `Origin` (not a browser's cross-site request), or this server's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    scheme = "https" if reached_over_tls(request) else "http"
    return origin in {f"{scheme}://{request.host}", request.app[appkeys.SETTINGS].base_url}


async def console_principal(
    request: web.Request, action: Action, visit_id: str | None = None
) -> Principal | None:
    """The principal of the request's console session; None when it has none. Raises (and
    audits) when the session is not valid, or when an unsafe request fails the CSRF check."""
    found = _session_claims(request)
    if found is None:
        return None
    token, claims = found
    access = request.app[appkeys.ACCESS]
    client = client_address(request, request.app[appkeys.SETTINGS].trusted_proxies)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        expected = str(claims.get("csrf", ""))
        if not expected or not secrets.compare_digest(sent, expected) or not same_origin(request):
            await access.refuse_request(action, client, "csrf-failed")
            raise ApiError("csrf-failed", f"send the console's {CSRF_HEADER} header", 403)
    return await access.authenticate(token, action=action, client=client, visit=visit_id)


async def require_console(request: web.Request, action: Action) -> tuple[Principal, str]:
    """The signed-in staff member and the session's CSRF value, or 401 `not-signed-in`."""
    principal = await console_principal(request, action)
    if principal is None:
        raise ApiError("not-signed-in", "sign in to the console first", 401)
    found = _session_claims(request)
    assert found is not None
    return principal, str(found[1].get("csrf", ""))


# --- one-time sign-in links -------------------------------------------------------------------


def sign_link(
    issuer: TokenIssuer, *, role: Role, org: str, name: str | None, sector: Sector
) -> str:
    """A token for a one-time console sign-in link (`screenvisit console-link`)."""
    linker = TokenIssuer(issuer.iss, issuer.audience + LINK_AUDIENCE_SUFFIX, issuer.key)
    return linker.sign(
        sub="console-" + secrets.token_hex(6),
        role=role,
        sector=sector,
        lifetime=LINK_SECONDS,
        org=org,
        name=name,
    )


def console_url(app: web.Application, role: Role = Role.GP) -> str:
    """A one-time sign-in link for the demo organisation (printed by `screenvisit serve`)."""
    settings = app[appkeys.SETTINGS]
    token = sign_link(
        app[appkeys.ISSUER], role=role, org=settings.org, name=None, sector=DEFAULT_SECTOR[role]
    )
    return f"{settings.base_url}/console#{token}"


async def use_link(request: web.Request, token: str) -> Principal:
    """The principal a sign-in link opens a session for, once; AuthenticationFailed else."""
    issuer = request.app[appkeys.ISSUER]
    verifier = request.app[appkeys.VERIFIER]
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=issuer.key.public_key,
            algorithms=["ES256"],
            audience=issuer.audience + LINK_AUDIENCE_SUFFIX,
            issuer=issuer.iss,
            leeway=5,
            options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token-expired", "the sign-in link has expired") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise AuthenticationFailed("token-invalid", "this is not a valid sign-in link") from None
    principal = verifier.principal(verifier.issuers[issuer.iss], claims)
    if not await ConsoleLinkUses(request.app[appkeys.DATABASE]).first_use(
        str(claims["jti"]), float(claims["exp"])
    ):
        raise AuthenticationFailed("link-used", "this sign-in link has been used already")
    return principal


class ConsoleLinkUses:
    """The `console_link_uses` table (migration 10): a jti can be used once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def first_use(self, jti: str, expires_at: float) -> bool:
        await self._db.execute("DELETE FROM console_link_uses WHERE expires_at < ?", time.time())
        rows = await self._db.fetch(
            "INSERT INTO console_link_uses (jti, expires_at) VALUES (?, ?)"
            " ON CONFLICT (jti) DO NOTHING RETURNING jti",
            jti,
            expires_at,
        )
        return bool(rows)
