"""Which issuers the deployment trusts, for which sectors, roles and organisations, with which
keys.

The trust file (SCREENVISIT_TRUST_FILE) is JSON:

    {"audience": "screenvisit",
     "issuers": [{"iss": "https://idp.kommune.example", "sectors": ["municipality"],
                  "roles": ["nurse"], "orgs": ["kommune-*"], "algorithms": ["ES256"],
                  "jwks_file": "kommune.jwks"}]}

`orgs` (required) lists the organisations an issuer speaks for, as fnmatch patterns matched
case-sensitively against a token's `org`; any organisation at all must be written as `["*"]`.
Seat tokens (a `visit` claim: the token is an invite link's seat) come from the server's own key;
an issuer may mint them only with `"seat_tokens": true`, and then only for visits of its `orgs`.

An issuer gives `jwks_file`, `jwks_url` or inline `jwks`. Keys rotate by `kid`: a token with an
unknown kid makes the issuer's key set reload (at most once per `min_refresh_seconds`), a changed
JWKS file is re-read on the next use, and a URL's key set is re-fetched when older than
`max_key_age_seconds`. A key removed from the set stops working as soon as the set is reloaded.
HS256 is accepted only from an issuer marked `"development": true` while development issuers are
switched on (SCREENVISIT_DEV_ISSUERS), and never alongside asymmetric algorithms.

An issuer that staff sign in to the console with (OpenID Connect, authorization code with PKCE)
declares it: `"oidc": {"discovery_url": "https://idp.example/.well-known/openid-configuration",
"client_id": "screenvisit-console", "client_secret": "..."}` (the secret only for a confidential
client; optional `"scope"`, default "openid profile"). Its ID tokens are checked against the keys
its discovery document names (`jwks_uri`); the issuer then needs no jwks source of its own.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from rooms.roles import Role, Sector

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256", "EdDSA"})
DEVELOPMENT_ALGORITHMS = frozenset({"HS256"})

#: Longest accepted token lifetime (exp - iat) per role, in seconds, unless the trust file says
#: otherwise. Citizens' links are often sent days before a booked visit; staff sign in daily.
DEFAULT_MAX_LIFETIME: dict[Role, int] = {
    Role.CITIZEN: 14 * 86400,
    Role.RELATIVE: 14 * 86400,
    Role.INTERPRETER: 14 * 86400,
    Role.NURSE: 12 * 3600,
    Role.GP: 12 * 3600,
    Role.SPECIALIST: 12 * 3600,
    Role.EVALUATOR: 12 * 3600,
    Role.ADMIN: 3600,
}


class TrustConfigError(ValueError):
    pass


class KeySet:
    """One issuer's verification keys by kid, reloadable from its source."""

    def __init__(
        self,
        *,
        static: dict[str, Any] | None = None,
        jwks: dict[str, Any] | None = None,
        jwks_file: Path | None = None,
        jwks_url: str | None = None,
        min_refresh_seconds: float = 2.0,
        max_key_age_seconds: float = 300.0,
    ) -> None:
        self._keys: dict[str, Any] = dict(static or {})
        self._jwks = jwks
        self._file = jwks_file
        self._url = jwks_url
        self._min_refresh = min_refresh_seconds
        self._max_age = max_key_age_seconds
        self._loaded_at = 0.0
        self._file_stamp: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        if jwks is not None:
            self._keys.update(parse_jwks(jwks))

    @property
    def reloadable(self) -> bool:
        return self._file is not None or self._url is not None

    async def key(self, kid: str) -> Any | None:
        if self.reloadable:
            if not self._loaded_at or await self._source_changed():
                await self._reload()
            elif kid not in self._keys and time.monotonic() - self._loaded_at >= self._min_refresh:
                await self._reload()
        return self._keys.get(kid)

    async def _source_changed(self) -> bool:
        if self._file is not None:
            return await asyncio.to_thread(self._stamp) != self._file_stamp
        return time.monotonic() - self._loaded_at > self._max_age

    def _stamp(self) -> tuple[int, int] | None:
        assert self._file is not None
        try:
            stat = self._file.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    async def _reload(self) -> None:
        async with self._lock:
            self._loaded_at = time.monotonic()
            try:
                if self._file is not None:
                    self._file_stamp = await asyncio.to_thread(self._stamp)
                    text = await asyncio.to_thread(self._file.read_text)
                    self._keys = parse_jwks(json.loads(text))
                elif self._url is not None:
                    timeout = aiohttp.ClientTimeout(total=5)
                    async with (
                        aiohttp.ClientSession(timeout=timeout) as http,
                        http.get(self._url) as response,
                    ):
                        response.raise_for_status()
                        self._keys = parse_jwks(await response.json(content_type=None))
            except (OSError, ValueError, aiohttp.ClientError, jwt.PyJWTError) as exc:
                # Keep the previous keys: a flaky JWKS endpoint must not lock everyone out.
                logger.warning("could not reload keys from %s: %s", self._file or self._url, exc)


def parse_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    """kid -> key object usable by PyJWT. Every key must have a kid."""
    keys: dict[str, Any] = {}
    for entry in jwks.get("keys", []):
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TrustConfigError("every key in a JWKS needs a 'kid'")
        keys[kid] = jwt.PyJWK.from_dict(entry).key
    return keys


@dataclass(frozen=True)
class OidcClient:
    """How this server signs staff in at an issuer: its discovery document and our client."""

    discovery_url: str
    client_id: str
    client_secret: str | None = None
    scope: str = "openid profile"


@dataclass
class TrustedIssuer:
    iss: str
    keys: KeySet
    algorithms: frozenset[str]
    sectors: frozenset[Sector]
    roles: frozenset[Role]
    #: fnmatch patterns of the organisations this issuer may name in `org`; none by default.
    orgs: tuple[str, ...] = ()
    #: Whether this issuer may mint seat tokens (a `visit` claim), for visits of its `orgs`.
    seat_tokens: bool = False
    max_lifetime: dict[Role, int] = field(default_factory=lambda: dict(DEFAULT_MAX_LIFETIME))
    #: Set when staff sign in to the console at this issuer (OpenID Connect).
    oidc: OidcClient | None = None

    def speaks_for(self, org: str) -> bool:
        return any(fnmatch.fnmatchcase(org, pattern) for pattern in self.orgs)


@dataclass
class TrustConfig:
    audience: str
    issuers: list[TrustedIssuer]


def _enum_set(raw: object, enum: type[Sector] | type[Role], what: str, iss: str) -> frozenset[Any]:
    if not isinstance(raw, list) or not raw:
        raise TrustConfigError(f"issuer {iss}: '{what}' must be a non-empty list")
    try:
        return frozenset(enum(value) for value in raw)
    except ValueError as exc:
        raise TrustConfigError(f"issuer {iss}: {exc}") from None


def _orgs(raw: object, iss: str) -> tuple[str, ...]:
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(pattern, str) and pattern for pattern in raw)
    ):
        raise TrustConfigError(
            f"issuer {iss}: 'orgs' is required: a non-empty list of the organisations it speaks "
            'for, as patterns such as ["kommune-*"] (["*"] for any organisation)'
        )
    return tuple(raw)


def _oidc(raw: object, iss: str) -> OidcClient | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TrustConfigError(f"issuer {iss}: 'oidc' must be an object")
    unknown = set(raw) - {"discovery_url", "client_id", "client_secret", "scope"}
    if unknown:
        raise TrustConfigError(f"issuer {iss}: unknown 'oidc' field(s) {sorted(unknown)}")
    url, client_id = raw.get("discovery_url"), raw.get("client_id")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise TrustConfigError(f"issuer {iss}: 'oidc.discovery_url' must be an http(s) URL")
    if not isinstance(client_id, str) or not client_id:
        raise TrustConfigError(f"issuer {iss}: 'oidc.client_id' is required")
    secret, scope = raw.get("client_secret"), raw.get("scope", "openid profile")
    if secret is not None and not isinstance(secret, str):
        raise TrustConfigError(f"issuer {iss}: 'oidc.client_secret' must be a string")
    if not isinstance(scope, str) or "openid" not in scope.split():
        raise TrustConfigError(f"issuer {iss}: 'oidc.scope' must include openid")
    return OidcClient(url, client_id, secret, scope)


def load_trust_file(path: Path, *, allow_development: bool) -> TrustConfig:
    """Parse and validate the trust file. Blocking: call at start-up."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrustConfigError(f"cannot read trust file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("issuers"), list):
        raise TrustConfigError("the trust file needs an 'issuers' list")
    issuers = []
    for entry in data["issuers"]:
        if not isinstance(entry, dict):
            raise TrustConfigError("every issuer must be a JSON object")
        iss = entry.get("iss")
        if not isinstance(iss, str) or not iss:
            raise TrustConfigError("every issuer needs an 'iss'")
        algorithms = frozenset(entry.get("algorithms") or ["ES256"])
        unknown = algorithms - ASYMMETRIC_ALGORITHMS - DEVELOPMENT_ALGORITHMS
        if unknown:
            raise TrustConfigError(f"issuer {iss}: algorithms {sorted(unknown)} are not allowed")
        if algorithms & DEVELOPMENT_ALGORITHMS:
            if not entry.get("development"):
                raise TrustConfigError(f'issuer {iss}: HS256 needs "development": true')
            if not allow_development:
                raise TrustConfigError(
                    f"issuer {iss} is a development issuer; switch them on with "
                    "SCREENVISIT_DEV_ISSUERS=true (never in production)"
                )
            if algorithms & ASYMMETRIC_ALGORITHMS:
                raise TrustConfigError(f"issuer {iss}: HS256 cannot be mixed with other algorithms")
        oidc = _oidc(entry.get("oidc"), iss)
        sources = [k for k in ("jwks", "jwks_file", "jwks_url") if entry.get(k)]
        if oidc is not None and not sources:
            sources, entry = ["jwks"], {**entry, "jwks": {"keys": []}}
        if len(sources) != 1:
            raise TrustConfigError(f"issuer {iss}: give exactly one of jwks, jwks_file, jwks_url")
        jwks_file = entry.get("jwks_file")
        keys = KeySet(
            jwks=entry.get("jwks"),
            jwks_file=(path.parent / jwks_file) if jwks_file else None,
            jwks_url=entry.get("jwks_url"),
            min_refresh_seconds=float(entry.get("min_refresh_seconds", 2.0)),
            max_key_age_seconds=float(entry.get("max_key_age_seconds", 300.0)),
        )
        seat_tokens = entry.get("seat_tokens", False)
        if not isinstance(seat_tokens, bool):
            raise TrustConfigError(f"issuer {iss}: 'seat_tokens' must be true or false")
        max_lifetime = dict(DEFAULT_MAX_LIFETIME)
        for role, seconds in (entry.get("max_lifetime_seconds") or {}).items():
            max_lifetime[Role(role)] = int(seconds)
        issuers.append(
            TrustedIssuer(
                iss=iss,
                keys=keys,
                algorithms=algorithms,
                sectors=_enum_set(entry.get("sectors"), Sector, "sectors", iss),
                roles=_enum_set(entry.get("roles"), Role, "roles", iss),
                orgs=_orgs(entry.get("orgs"), iss),
                seat_tokens=seat_tokens,
                max_lifetime=max_lifetime,
                oidc=oidc,
            )
        )
    audience = data.get("audience", "screenvisit")
    if not isinstance(audience, str):
        raise TrustConfigError("'audience' must be a string")
    return TrustConfig(audience=audience, issuers=issuers)
