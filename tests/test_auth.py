"""Token verification for the server's own issuer (its invite links).

The full corpus of bad tokens, over HTTP and WebSocket with the sectors' issuers, is in
test_access.py."""

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from rooms.errors import AuthenticationFailed
from rooms.roles import Role, Sector
from server.auth import TokenIssuer, TokenVerifier
from server.keys import load_or_create_signing_key


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    return TokenIssuer(
        "screenvisit-test", "screenvisit", load_or_create_signing_key(tmp_path / "k.pem")
    )


@pytest.fixture
def verifier(issuer: TokenIssuer) -> TokenVerifier:
    verifier = TokenVerifier("screenvisit")
    verifier.add_issuer(issuer.trusted())
    return verifier


def citizen_token(issuer: TokenIssuer, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": issuer.iss,
        "aud": "screenvisit",
        "sub": "p-abc",
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
        "sector": "citizen",
        "role": "citizen",
        "visit": "v-1",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, issuer.key.private_key, "ES256", headers={"kid": issuer.key.kid})


async def test_a_link_token_becomes_a_principal(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.sign(
        sub="p-1",
        role=Role.NURSE,
        sector=Sector.MUNICIPALITY,
        lifetime=60,
        visit="v-9",
        org="kommune-1",
        name="Sygeplejerske Sara",
    )
    principal = await verifier.authenticate(token)
    assert principal.role is Role.NURSE and principal.sector is Sector.MUNICIPALITY
    assert principal.visit == "v-9" and principal.participant == "p-1"
    assert principal.org == "kommune-1" and principal.name == "Sygeplejerske Sara"


def test_the_key_survives_a_restart(tmp_path: Path) -> None:
    first = load_or_create_signing_key(tmp_path / "k.pem")
    again = load_or_create_signing_key(tmp_path / "k.pem")
    assert first.kid == again.kid
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    other = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"v-1"', b'"v-2"')
    ).decode()
    return f"{header}.{other}.{signature}"


def _foreign_key(issuer: TokenIssuer) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer.iss,
        "aud": "screenvisit",
        "sub": "p",
        "iat": now,
        "exp": now + 60,
        "jti": "j",
        "sector": "citizen",
        "role": "citizen",
        "visit": "v-1",
    }
    return jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), "ES256", headers={"kid": issuer.key.kid}
    )


BAD_TOKENS = {
    "expired": (lambda i: citizen_token(i, exp=int(time.time()) - 3600), "token-expired"),
    "not yet valid": (
        lambda i: citizen_token(i, nbf=int(time.time()) + 3600),
        "token-not-yet-valid",
    ),
    "wrong audience": (lambda i: citizen_token(i, aud="other"), "token-wrong-audience"),
    "unknown issuer": (lambda i: citizen_token(i, iss="evil"), "token-unknown-issuer"),
    "missing exp": (lambda i: citizen_token(i, exp=None), "token-missing-claim"),
    "missing jti": (lambda i: citizen_token(i, jti=None), "token-missing-claim"),
    "missing role": (lambda i: citizen_token(i, role=None), "token-missing-claim"),
    "missing visit": (lambda i: citizen_token(i, visit=None), "token-missing-claim"),
    "cpr-like sub": (lambda i: citizen_token(i, sub="010101-1234"), "token-sub-personal-data"),
    "tampered payload": (lambda i: _tampered(citizen_token(i)), "token-bad-signature"),
    "foreign key": (_foreign_key, "token-bad-signature"),
    "alg none": (
        lambda i: jwt.encode({"iss": i.iss}, "", "none", headers={"kid": i.key.kid}),
        "token-algorithm-not-allowed",
    ),
    "garbage": (lambda i: "not-a-token", "token-malformed"),
    "oversized": (lambda i: "a" * 9000, "token-too-large"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_are_refused_with_their_reason(
    case: str, issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    make, code = BAD_TOKENS[case]
    with pytest.raises(AuthenticationFailed) as caught:
        await verifier.authenticate(make(issuer))
    assert caught.value.code == code
