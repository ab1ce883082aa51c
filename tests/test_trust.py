"""The trust file: what it refuses at start-up, and keys that rotate without a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from rooms.errors import AuthenticationFailed
from rooms.roles import Role, Sector
from server.auth import TokenVerifier
from server.trust import TrustConfigError, load_trust_file
from tests.support.identity import KOMMUNE, Identities, make_identities, public_jwk


def verifier_for(identities: Identities, allow_development: bool = False) -> TokenVerifier:
    trust = load_trust_file(identities.trust_file, allow_development=allow_development)
    verifier = TokenVerifier(trust.audience)
    for issuer in trust.issuers:
        verifier.add_issuer(issuer)
    return verifier


async def code_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await verifier.authenticate(token)
    return caught.value.code


async def test_real_key_types_from_three_sectors(tmp_path: Path) -> None:
    ids = make_identities(tmp_path)
    verifier = verifier_for(ids)
    nurse = await verifier.authenticate(ids.nurse())  # EC P-256, ES256
    specialist = await verifier.authenticate(ids.specialist())  # RSA 2048, RS256
    gp = await verifier.authenticate(ids.gp())  # Ed25519, EdDSA
    assert (nurse.role, nurse.sector, nurse.org) == (Role.NURSE, Sector.MUNICIPALITY, "kommune-851")
    assert (specialist.role, specialist.sector) == (Role.SPECIALIST, Sector.REGION)
    assert (gp.role, gp.sector) == (Role.GP, Sector.GENERAL_PRACTICE)


async def test_keys_rotate_without_a_restart_and_removed_keys_stop_working(
    tmp_path: Path,
) -> None:
    ids = make_identities(tmp_path)
    verifier = verifier_for(ids)
    old_token = ids.nurse(kid="k1")
    assert (await verifier.authenticate(old_token)).role is Role.NURSE

    ids.kommune.keys["k2"] = ec.generate_private_key(ec.SECP256R1())
    new_token = ids.nurse(kid="k2")
    assert await code_of(verifier, new_token) == "token-unknown-key"  # not published yet
    ids.write_kommune_jwks()  # the municipality publishes k2 beside k1
    assert (await verifier.authenticate(new_token)).role is Role.NURSE
    assert (await verifier.authenticate(old_token)).role is Role.NURSE

    del ids.kommune.keys["k1"]
    ids.write_kommune_jwks()  # k1 retired
    assert await code_of(verifier, old_token) == "token-unknown-key"
    assert (await verifier.authenticate(ids.nurse(kid="k2"))).role is Role.NURSE


async def test_keys_from_a_jwks_url_are_fetched_again_for_an_unknown_kid(tmp_path: Path) -> None:
    ids = make_identities(tmp_path)
    published: dict[str, Any] = {"keys": [public_jwk(ids.kommune.keys["k1"], "k1")]}

    async def jwks(_request: web.Request) -> web.Response:
        return web.json_response(published)

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    async with TestServer(app, host="127.0.0.1") as server:
        trust = json.loads(ids.trust_file.read_text())
        trust["issuers"][0] = {
            "iss": KOMMUNE,
            "sectors": ["municipality"],
            "roles": ["nurse"],
            "orgs": ["kommune-*"],
            "algorithms": ["ES256"],
            "jwks_url": str(server.make_url("/jwks")),
            "min_refresh_seconds": 0,
        }
        ids.trust_file.write_text(json.dumps(trust))
        verifier = verifier_for(ids)
        assert (await verifier.authenticate(ids.nurse())).role is Role.NURSE
        ids.kommune.keys["k2"] = ec.generate_private_key(ec.SECP256R1())
        published["keys"].append(public_jwk(ids.kommune.keys["k2"], "k2"))
        assert (await verifier.authenticate(ids.nurse(kid="k2"))).role is Role.NURSE


def _rewrite(ids: Identities, **changes: Any) -> None:
    trust = json.loads(ids.trust_file.read_text())
    trust["issuers"][0].update(changes)
    trust["issuers"][0] = {k: v for k, v in trust["issuers"][0].items() if v is not None}
    ids.trust_file.write_text(json.dumps(trust))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"algorithms": ["HS256"]}, 'needs "development": true'),
        ({"algorithms": ["HS256"], "development": True}, "switch them on"),
        ({"algorithms": ["RS512"]}, "not allowed"),
        ({"sectors": ["hospital"]}, "hospital"),
        ({"roles": []}, "non-empty"),
        ({"jwks_file": None}, "exactly one of"),
        ({"jwks_url": "https://idp.test/jwks"}, "exactly one of"),
    ],
)
def test_unsafe_or_broken_trust_files_are_refused_at_start(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    ids = make_identities(tmp_path)
    _rewrite(ids, **changes)
    with pytest.raises(TrustConfigError, match=message):
        load_trust_file(ids.trust_file, allow_development=False)


async def test_a_development_issuer_needs_both_switches(tmp_path: Path) -> None:
    ids = make_identities(tmp_path)
    secret = {"kty": "oct", "kid": "dev", "k": "c2VjcmV0LWZvci1kZXZlbG9wbWVudC1vbmx5LTEyMzQ1Njc4"}
    _rewrite(ids, algorithms=["HS256"], development=True, jwks={"keys": [secret]}, jwks_file=None)
    with pytest.raises(TrustConfigError):
        load_trust_file(ids.trust_file, allow_development=False)
    verifier = verifier_for(ids, allow_development=True)
    import jwt

    token = ids.kommune.sign(
        kid="dev",
        key=b"secret-for-development-only-12345678",
        alg="HS256",
        sector="municipality",
        role="nurse",
        org="kommune-851",
    )
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert (await verifier.authenticate(token)).role is Role.NURSE
