"""Test identity providers: real EC P-256, RSA 2048 and Ed25519 keys, JWKS and a trust file.

Three sectors' issuers, as a region would configure them:
  kommune  (municipality: nurse; kommune-*)      ES256, keys in a JWKS file (rotatable)
  region   (region: specialist, evaluator, admin; rh-*, region-*, praksis-*)
                                                RS256, keys in a JWKS file
  praksis  (general practice: gp, nurse; praksis-*) EdDSA, keys inline in the trust file
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AUDIENCE = "screenvisit"
KOMMUNE = "https://idp.kommune.test"
REGION = "https://idp.region.test"
PRAKSIS = "https://idp.praksis.test"


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid}


@dataclass
class Issuer:
    iss: str
    alg: str
    keys: dict[str, Any] = field(default_factory=dict)

    def sign(
        self,
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        key: Any = None,
        alg: str | None = None,
        **claims: Any,
    ) -> str:
        kid = kid or next(iter(self.keys))
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.iss,
            "aud": AUDIENCE,
            "sub": "staff-" + secrets.token_hex(4),
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_urlsafe(8),
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, key or self.keys[kid], alg or self.alg, headers={"kid": kid, **(headers or {})}
        )


@dataclass
class Identities:
    folder: Path
    kommune: Issuer
    region: Issuer
    praksis: Issuer
    trust_file: Path

    def write_kommune_jwks(self) -> None:
        jwks = {"keys": [public_jwk(k, kid) for kid, k in self.kommune.keys.items()]}
        (self.folder / "kommune.jwks").write_text(json.dumps(jwks))

    def nurse(self, **claims: Any) -> str:
        return self.kommune.sign(
            **{"sector": "municipality", "role": "nurse", "org": "kommune-851", **claims}
        )

    def specialist(self, **claims: Any) -> str:
        return self.region.sign(
            **{"sector": "region", "role": "specialist", "org": "rh-aalborg", **claims}
        )

    def admin(self, **claims: Any) -> str:
        return self.region.sign(
            **{"sector": "region", "role": "admin", "org": "region-nord", **claims}
        )

    def evaluator(self, **claims: Any) -> str:
        return self.region.sign(
            **{"sector": "region", "role": "evaluator", "org": "region-nord", **claims}
        )

    def gp(self, **claims: Any) -> str:
        return self.praksis.sign(
            **{"sector": "general-practice", "role": "gp", "org": "praksis-7", **claims}
        )


def make_identities(folder: Path) -> Identities:
    folder.mkdir(parents=True, exist_ok=True)
    kommune = Issuer(KOMMUNE, "ES256", {"k1": ec.generate_private_key(ec.SECP256R1())})
    region = Issuer(REGION, "RS256", {"r1": rsa.generate_private_key(65537, 2048)})
    praksis = Issuer(PRAKSIS, "EdDSA", {"e1": ed25519.Ed25519PrivateKey.generate()})
    trust = {
        "audience": AUDIENCE,
        "issuers": [
            {
                "iss": KOMMUNE,
                "sectors": ["municipality"],
                "roles": ["nurse"],
                "orgs": ["kommune-*"],
                "algorithms": ["ES256"],
                "jwks_file": "kommune.jwks",
            },
            {
                "iss": REGION,
                "sectors": ["region"],
                "roles": ["specialist", "evaluator", "admin"],
                # The region runs its hospitals and evaluates its general practices.
                "orgs": ["rh-*", "region-*", "praksis-*"],
                "algorithms": ["RS256"],
                "jwks_file": "region.jwks",
            },
            {
                "iss": PRAKSIS,
                "sectors": ["general-practice"],
                "roles": ["gp", "nurse"],
                "orgs": ["praksis-*"],
                "algorithms": ["EdDSA"],
                "jwks": {"keys": [public_jwk(praksis.keys["e1"], "e1")]},
            },
        ],
    }
    identities = Identities(folder, kommune, region, praksis, folder / "trust.json")
    identities.write_kommune_jwks()
    (folder / "region.jwks").write_text(json.dumps({"keys": [public_jwk(region.keys["r1"], "r1")]}))
    identities.trust_file.write_text(json.dumps(trust))
    return identities
