"""Staff sign in to the console with OpenID Connect: authorization code flow with PKCE (S256).

Only issuers of the trust file that declare `oidc` (server/trust.py) are offered. Their discovery
document names the endpoints; the ID token is verified with PyJWT against the keys at its
`jwks_uri` (PyJWKClient, which caches them and is run off the event loop), and must carry the
`nonce` of this sign-in. Its claims become a principal through the same checks as any bearer
token (TokenVerifier.principal): the issuer's sectors, roles and organisations bind it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt

from rooms.errors import AuthenticationFailed
from rooms.principal import Principal
from server.auth import TokenVerifier
from server.trust import ASYMMETRIC_ALGORITHMS, OidcClient, TrustedIssuer

#: Every call to an identity provider is bounded.
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
#: A discovery document is fetched again after this many seconds.
DISCOVERY_MAX_AGE = 3600.0


class SignInFailed(Exception):
    """The sign-in cannot go on; `code` says why, without any token or personal data."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PendingSignIn:
    """What the browser carries (signed, in a cookie) from the redirect to the callback."""

    iss: str
    state: str
    nonce: str
    verifier: str


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcProvider:
    """One issuer as an OpenID provider: discovery, the authorize URL, code exchange, ID token."""

    def __init__(self, issuer: TrustedIssuer, client: OidcClient) -> None:
        self.issuer = issuer
        self.client = client
        self._discovery: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = asyncio.Lock()

    async def discovery(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with self._lock:
            if self._discovery is None or time.monotonic() - self._fetched_at > DISCOVERY_MAX_AGE:
                try:
                    async with http.get(self.client.discovery_url) as response:
                        response.raise_for_status()
                        doc = await response.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    raise SignInFailed(
                        "idp-unreachable", f"the identity provider did not answer ({exc})"
                    ) from None
                needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
                if not isinstance(doc, dict) or not all(
                    isinstance(doc.get(k), str) for k in needed
                ):
                    raise SignInFailed("idp-discovery-invalid", "the discovery document is invalid")
                if doc["issuer"] != self.issuer.iss:
                    raise SignInFailed(
                        "idp-discovery-invalid", "the discovery document names another issuer"
                    )
                self._discovery, self._fetched_at = doc, time.monotonic()
                self._jwks = jwt.PyJWKClient(doc["jwks_uri"], lifespan=300, timeout=5)
            return self._discovery

    async def begin(
        self, http: aiohttp.ClientSession, redirect_uri: str
    ) -> tuple[str, PendingSignIn]:
        """The URL to send the browser to, and what to remember until it comes back."""
        doc = await self.discovery(http)
        pending = PendingSignIn(
            iss=self.issuer.iss,
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.client.scope,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": pkce_challenge(pending.verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = doc["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", pending

    async def finish(
        self,
        http: aiohttp.ClientSession,
        verifier: TokenVerifier,
        pending: PendingSignIn,
        code: str,
        redirect_uri: str,
    ) -> Principal:
        """Exchange the code, verify the ID token, and return who signed in."""
        doc = await self.discovery(http)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client.client_id,
            "code_verifier": pending.verifier,
        }
        auth = None
        if self.client.client_secret is not None:
            auth = aiohttp.BasicAuth(self.client.client_id, self.client.client_secret)
        try:
            async with http.post(doc["token_endpoint"], data=form, auth=auth) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SignInFailed(
                "idp-unreachable", f"the token endpoint did not answer ({exc})"
            ) from None
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            raise SignInFailed("idp-token-refused", f"the identity provider said {error!r}")
        claims = await self._verify(body["id_token"])
        if not secrets.compare_digest(str(claims.get("nonce", "")), pending.nonce):
            raise SignInFailed("id-token-invalid", "the ID token is not for this sign-in")
        try:
            return verifier.principal(self.issuer, claims)
        except AuthenticationFailed as exc:
            raise SignInFailed(exc.code, exc.message) from None

    async def _verify(self, id_token: str) -> dict[str, Any]:
        assert self._jwks is not None
        algorithms = sorted(self.issuer.algorithms & ASYMMETRIC_ALGORITHMS)
        try:
            key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, id_token)
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key.key,
                algorithms=algorithms,
                audience=self.client.client_id,
                issuer=self.issuer.iss,
                leeway=30,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError:
            raise SignInFailed(
                "idp-unreachable", "the provider's keys could not be fetched"
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise SignInFailed("id-token-invalid", f"the ID token is not valid: {exc}") from None
        return claims


class OidcSignIn:
    """The providers staff may sign in at, and the HTTP client that talks to them (owned)."""

    def __init__(self, issuers: list[TrustedIssuer]) -> None:
        self.providers = {i.iss: OidcProvider(i, i.oidc) for i in issuers if i.oidc is not None}
        self._http: aiohttp.ClientSession | None = None

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
