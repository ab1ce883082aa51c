"""Tokens in, principals out. Every decision about who someone is comes from signed claims.

The verifier holds a registry of trusted issuers (server/trust.py), each limited to the sectors,
roles and organisations it may vouch for: the server itself, for its invite links (the only
issuer of seat tokens unless the trust file lets an issuer mint them for its own organisations),
and the municipalities', practices' and regions' identity providers named in the trust file.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from rooms.errors import AuthenticationFailed
from rooms.ids import ParticipantId, VisitId
from rooms.policy import SOURCES
from rooms.principal import Principal
from rooms.roles import CLINICIAN_ROLES, Role, Sector
from server.keys import SigningKey
from server.trust import KeySet, TrustedIssuer

MAX_TOKEN_BYTES = 8 * 1024
LEEWAY_SECONDS = 30
#: Ten digits with or without a dash after six: the shape of a Danish CPR number.
CPR_LIKE = re.compile(r"^\d{6}-?\d{4}$")
VISIT_BOUND_ROLES = frozenset({Role.CITIZEN, Role.RELATIVE, Role.INTERPRETER})
#: Roles that act for an organisation and must name it in `org`.
STAFF_ROLES = CLINICIAN_ROLES | {Role.EVALUATOR, Role.ADMIN}


class RevokedTokens(Protocol):
    def is_revoked(self, jti: str) -> bool: ...


@dataclass
class TokenVerifier:
    audience: str
    issuers: dict[str, TrustedIssuer] = field(default_factory=dict)
    revoked: RevokedTokens | None = None
    #: Clock skew tolerated on exp, nbf and iat, in seconds.
    leeway: float = LEEWAY_SECONDS

    def add_issuer(self, issuer: TrustedIssuer) -> None:
        self.issuers[issuer.iss] = issuer

    def may_seat(self, principal: Principal, visit_org: str) -> bool:
        """Whether the issuer of a seat token may open seats in a visit of `visit_org`."""
        issuer = self.issuers.get(principal.issuer)
        return issuer is not None and issuer.seat_tokens and issuer.speaks_for(visit_org)

    async def authenticate(self, token: str) -> Principal:
        """Verify `token` and return its principal, or raise AuthenticationFailed."""
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise AuthenticationFailed("token-too-large", "the token is larger than allowed")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise AuthenticationFailed("token-malformed", "the token could not be read") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise AuthenticationFailed("token-malformed", "the token's 'alg' is not a string")
        issuer = self.issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise AuthenticationFailed("token-unknown-issuer", "the token's issuer is not trusted")
        if alg not in issuer.algorithms:
            raise AuthenticationFailed(
                "token-algorithm-not-allowed", f"algorithm {alg!r} is not accepted from this issuer"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("token-missing-kid", "the token's header names no 'kid'")
        key = await issuer.keys.key(kid)
        if key is None:
            raise AuthenticationFailed("token-unknown-key", "the token's signing key is not known")
        claims = self._verify(token, key, alg, issuer)
        return self.principal(issuer, claims)

    def _verify(self, token: str, key: Any, alg: str, issuer: TrustedIssuer) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=issuer.iss,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token-expired", "the link has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed(
                "token-not-yet-valid", "the token is not valid yet"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed(
                "token-wrong-audience", "the token is for another service"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(
                "token-missing-claim", f"the token has no {exc.claim!r}"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed(
                "token-bad-signature", "the token's signature is wrong"
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthenticationFailed("token-invalid", f"the token is not valid: {exc}") from None
        for claim in ("exp", "iat", "nbf"):
            if claim in claims and not _is_number(claims[claim]):
                raise AuthenticationFailed("token-invalid", f"{claim!r} must be a number")
        if self.revoked is not None and self.revoked.is_revoked(str(claims["jti"])):
            raise AuthenticationFailed("token-revoked", "this token has been revoked")
        return claims

    def principal(self, issuer: TrustedIssuer, claims: dict[str, Any]) -> Principal:
        """The principal of verified `claims` from `issuer`, within what the issuer may vouch
        for (also for an OpenID Connect ID token, which may carry no jti)."""
        try:
            sector = Sector(str(claims.get("sector")))
            role = Role(str(claims.get("role")))
        except ValueError:
            raise AuthenticationFailed(
                "token-missing-claim", "the token needs a valid 'sector' and 'role'"
            ) from None
        if sector not in issuer.sectors:
            raise AuthenticationFailed(
                "token-issuer-not-allowed",
                f"this issuer may not issue tokens for the {sector.value} sector",
                status=403,
            )
        if role not in issuer.roles:
            raise AuthenticationFailed(
                "token-issuer-not-allowed",
                f"this issuer may not issue {role.value} tokens",
                status=403,
            )
        if claims["exp"] - claims["iat"] > issuer.max_lifetime[role]:
            raise AuthenticationFailed(
                "token-lifetime-too-long",
                f"a {role.value} token may live at most {issuer.max_lifetime[role]} s",
            )
        subject = str(claims["sub"])
        if CPR_LIKE.match(subject):
            raise AuthenticationFailed(
                "token-sub-personal-data", "the token's subject looks like a CPR number"
            )
        visit = claims.get("visit")
        if role in VISIT_BOUND_ROLES and not isinstance(visit, str):
            raise AuthenticationFailed("token-missing-claim", f"a {role.value} token needs 'visit'")
        org = claims.get("org")
        if role in STAFF_ROLES and not isinstance(org, str):
            raise AuthenticationFailed("token-missing-claim", f"a {role.value} token needs 'org'")
        if isinstance(org, str) and not issuer.speaks_for(org):
            raise AuthenticationFailed(
                "org-not-allowed", "this issuer may not speak for that organisation", status=403
            )
        if "visit" in claims and not issuer.seat_tokens:
            raise AuthenticationFailed(
                "seat-token-issuer-not-allowed",
                "this issuer may not issue invite-link (seat) tokens",
                status=403,
            )
        name = claims.get("name")
        sources = claims.get("sources")
        if sources is not None and (
            not isinstance(sources, list) or any(source not in SOURCES for source in sources)
        ):
            raise AuthenticationFailed(
                "token-invalid",
                f"'sources' must be a list of {', '.join(SOURCES)}",
            )
        return Principal(
            subject=subject,
            issuer=issuer.iss,
            role=role,
            sector=sector,
            org=org if isinstance(org, str) else None,
            visit=VisitId(visit) if isinstance(visit, str) else None,
            participant=ParticipantId(subject) if isinstance(visit, str) else None,
            name=name if isinstance(name, str) else None,
            token_id=str(claims["jti"]) if "jti" in claims else None,
            expires_at=float(claims["exp"]),
            sources=frozenset(sources) if sources is not None else None,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class TokenIssuer:
    """Signs the server's own tokens: invite links and the CLI's short-lived host tokens."""

    iss: str
    audience: str
    key: SigningKey

    def trusted(self) -> TrustedIssuer:
        return TrustedIssuer(
            iss=self.iss,
            keys=KeySet(static={self.key.kid: self.key.public_key}),
            algorithms=frozenset({"ES256"}),
            sectors=frozenset(Sector),
            roles=frozenset(Role),
            orgs=("*",),
            seat_tokens=True,
        )

    def sign(
        self,
        *,
        sub: str,
        role: Role,
        sector: Sector,
        lifetime: float,
        visit: str | None = None,
        org: str | None = None,
        name: str | None = None,
        extra: dict[str, Any] | None = None,
        sources: list[str] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "exp": now + int(lifetime),
            # Hex: a jti must never look like a command-line option to `token revoke`.
            "jti": secrets.token_hex(16),
            "sector": sector.value,
            "role": role.value,
        }
        for claim, value in (("visit", visit), ("org", org), ("name", name), ("sources", sources)):
            if value is not None:
                claims[claim] = value
        claims.update(extra or {})
        assert isinstance(self.key.private_key, ec.EllipticCurvePrivateKey)
        return jwt.encode(
            claims, self.key.private_key, algorithm="ES256", headers={"kid": self.key.kid}
        )
