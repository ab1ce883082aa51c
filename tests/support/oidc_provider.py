"""A small, real OpenID Connect provider over HTTP for the console's sign-in tests.

Discovery, an authorize endpoint that consents at once for the user the test names, a token
endpoint that checks the code, the redirect URI, the client and the PKCE verifier (S256), and
the JWKS. ID tokens are ES256 with the claims the trust file's issuer binds (sector, role, org).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.identity import public_jwk
from tests.support.servers import free_port

CLIENT_ID = "screenvisit-console"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class OidcProvider:
    port: int
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    #: Who "signs in" at the next authorize request.
    user: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    #: Token requests refused, by reason (what a test can check the server did right).
    refused: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def iss(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def trust_entry(self, **overrides: Any) -> dict[str, Any]:
        return {
            "iss": self.iss,
            "sectors": ["municipality", "general-practice"],
            "roles": ["nurse", "gp", "evaluator"],
            "orgs": ["kommune-*"],
            "algorithms": ["ES256"],
            "oidc": {
                "discovery_url": self.iss + "/.well-known/openid-configuration",
                "client_id": CLIENT_ID,
            },
            **overrides,
        }

    async def discovery(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.iss,
                "authorization_endpoint": self.iss + "/authorize",
                "token_endpoint": self.iss + "/token",
                "jwks_uri": self.iss + "/jwks",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "subject_types_supported": ["public"],
            }
        )

    async def jwks(self, _request: web.Request) -> web.Response:
        return web.json_response({"keys": [public_jwk(self.key, "op1")]})

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if (
            q.get("response_type") != "code"
            or q.get("client_id") != CLIENT_ID
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
            or "openid" not in q.get("scope", "").split()
        ):
            raise web.HTTPBadRequest(text="bad authorization request")
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(
            CLIENT_ID, q["redirect_uri"], q["code_challenge"], q.get("nonce", ""), dict(self.user)
        )
        query = urlencode({"code": code, "state": q.get("state", "")})
        raise web.HTTPFound(f"{q['redirect_uri']}?{query}")

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self.grants.pop(str(form.get("code", "")), None)
        reason = None
        if form.get("grant_type") != "authorization_code" or grant is None:
            reason = "invalid_grant"
        elif form.get("redirect_uri") != grant.redirect_uri or form.get("client_id") != CLIENT_ID:
            reason = "invalid_grant"
        else:
            digest = hashlib.sha256(str(form.get("code_verifier", "")).encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                reason = "invalid_grant"
        if reason is not None or grant is None:
            self.refused.append(reason or "invalid_grant")
            return web.json_response({"error": reason}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.iss,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **grant.claims,
        }
        id_token = jwt.encode(claims, self.key, "ES256", headers={"kid": "op1"})
        return web.json_response(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            }
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def start_provider() -> OidcProvider:
    provider = OidcProvider(free_port())
    await provider.start()
    return provider


def write_trust_file(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"audience": "screenvisit", "issuers": list(entries)}))
    return path
