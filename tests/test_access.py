"""The sector trust model end to end: every bad token refused precisely, on HTTP and WebSocket,
and every decision in the audit log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rooms.roles import Role, Sector
from server import appkeys
from server.app import create_app
from server.config import Settings
from tests.sqlbackends import backend_for
from tests.support.identity import KOMMUNE, Identities, make_identities

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return make_identities(tmp_path / "idp")


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, identities: Identities) -> Client:
    configured = replace(
        settings, trust_file=identities.trust_file, auth_failures_per_minute=10_000
    )
    made: Client = await aiohttp_client(create_app(configured))
    return made


async def book_by_gp(client: Client, identities: Identities) -> dict[str, Any]:
    response = await client.post(
        "/api/visits",
        json={
            "kind": "assisted",
            "participants": [{"role": "citizen"}, {"role": "nurse"}, {"role": "gp"}],
        },
        headers={"Authorization": f"Bearer {identities.gp()}"},
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def token_of(link: str) -> str:
    return link.split("#", 1)[1]


async def ws_join(client: Client, token: str, visit: str) -> dict[str, Any]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    msg = await ws.receive(timeout=10)
    assert msg.type is WSMsgType.TEXT
    data: dict[str, Any] = json.loads(msg.data)
    await ws.close()
    return data


def _hs256_with_public_key(ids: Identities) -> str:
    pem = (
        ids.kommune.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    claims = {
        "iss": KOMMUNE,
        "aud": "screenvisit",
        "sub": "s",
        "iat": now,
        "exp": now + 60,
        "jti": "j",
        "sector": "municipality",
        "role": "nurse",
        "org": "kommune-851",
    }
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(claims).encode())
    import hashlib
    import hmac

    signature = hmac.new(pem, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + jwt.utils.base64url_encode(signature)).decode()


def _alg_none(ids: Identities) -> str:
    now = int(time.time())
    claims = {
        "iss": KOMMUNE,
        "aud": "screenvisit",
        "sub": "s",
        "iat": now,
        "exp": now + 60,
        "jti": "j",
        "sector": "municipality",
        "role": "nurse",
        "org": "kommune-851",
    }
    return jwt.encode(claims, "", algorithm="none", headers={"kid": "k1"})


def _tampered(ids: Identities) -> str:
    header, payload, signature = ids.nurse().split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["org"] = "kommune-101"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


def _now() -> int:
    return int(time.time())


Maker = Callable[[Identities], str]

#: name -> (make a token, expected code, expected HTTP status)
CORPUS: dict[str, tuple[Maker, str, int]] = {
    "alg none": (_alg_none, "token-algorithm-not-allowed", 401),
    "HS256 signed with the issuer's public key": (
        _hs256_with_public_key,
        "token-algorithm-not-allowed",
        401,
    ),
    "RS256 from an ES256-only issuer": (
        lambda i: i.kommune.sign(
            key=i.region.keys["r1"], alg="RS256", sector="municipality", role="nurse", org="o"
        ),
        "token-algorithm-not-allowed",
        401,
    ),
    "unknown kid": (lambda i: i.nurse(headers={"kid": "k-unknown"}), "token-unknown-key", 401),
    "no kid": (
        lambda i: jwt.encode({"iss": KOMMUNE}, i.kommune.keys["k1"], "ES256"),
        "token-missing-kid",
        401,
    ),
    "signed by a stranger's key under a known kid": (
        lambda i: i.nurse(key=ec.generate_private_key(ec.SECP256R1())),
        "token-bad-signature",
        401,
    ),
    "tampered payload": (_tampered, "token-bad-signature", 401),
    "expired": (lambda i: i.nurse(iat=_now() - 7200, exp=_now() - 3600), "token-expired", 401),
    "not yet valid": (lambda i: i.nurse(nbf=_now() + 3600), "token-not-yet-valid", 401),
    "wrong audience": (lambda i: i.nurse(aud="other-service"), "token-wrong-audience", 401),
    "audience list without ours": (lambda i: i.nurse(aud=["a", "b"]), "token-wrong-audience", 401),
    "unknown issuer": (
        lambda i: i.kommune.sign(
            iss="https://evil.test", sector="municipality", role="nurse", org="o"
        ),
        "token-unknown-issuer",
        401,
    ),
    "issuer not allowed for the sector": (
        lambda i: i.kommune.sign(sector="region", role="nurse", org="o"),
        "token-issuer-not-allowed",
        403,
    ),
    "issuer not allowed for the role": (
        lambda i: i.kommune.sign(sector="municipality", role="gp", org="o"),
        "token-issuer-not-allowed",
        403,
    ),
    "missing exp": (lambda i: i.nurse(exp=None), "token-missing-claim", 401),
    "missing iat": (lambda i: i.nurse(iat=None), "token-missing-claim", 401),
    "missing jti": (lambda i: i.nurse(jti=None), "token-missing-claim", 401),
    "missing sub": (lambda i: i.nurse(sub=None), "token-missing-claim", 401),
    "missing sector": (lambda i: i.kommune.sign(role="nurse", org="o"), "token-missing-claim", 401),
    "missing role": (
        lambda i: i.kommune.sign(sector="municipality", org="o"),
        "token-missing-claim",
        401,
    ),
    "unknown role": (
        lambda i: i.kommune.sign(sector="municipality", role="surgeon", org="o"),
        "token-missing-claim",
        401,
    ),
    "staff token without org": (
        lambda i: i.kommune.sign(sector="municipality", role="nurse"),
        "token-missing-claim",
        401,
    ),
    "exp not a number": (lambda i: i.nurse(exp="tomorrow"), "token-invalid", 401),
    "lifetime longer than the role allows": (
        lambda i: i.nurse(exp=_now() + 86400 * 3),
        "token-lifetime-too-long",
        401,
    ),
    "CPR number as sub": (lambda i: i.nurse(sub="010190-1234"), "token-sub-personal-data", 401),
    "CPR number without dash as sub": (
        lambda i: i.nurse(sub="0101901234"),
        "token-sub-personal-data",
        401,
    ),
    "oversized token": (lambda i: i.nurse(padding="x" * 9000), "token-too-large", 401),
    "not a JWT": (lambda i: "definitely-not-a-token", "token-malformed", 401),
    "two segments": (lambda i: "abc.def", "token-malformed", 401),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
async def test_bad_tokens_are_refused_on_http_and_websocket_and_audited(
    client: Client, identities: Identities, case: str
) -> None:
    make, code, status = CORPUS[case]
    token = make(identities)
    response = await client.post(
        "/api/visits",
        json={"participants": [{"role": "citizen"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"]

    error = await ws_join(client, token, "v-whatever")
    assert (error["type"], error["code"], error["fatal"]) == ("error", code, True), error

    records = await client.app[appkeys.AUDIT].query()
    refused = [r for r in records if r.result == "refused" and r.reason == code]
    assert {r.action for r in refused} == {"create-visit", "join"}
    assert all(r.client == "127.0.0.1" for r in refused)
    assert all(token not in repr(r) for r in records)


def test_the_corpus_covers_at_least_25_kinds() -> None:
    # Besides these: visit mismatch, revoked, other organisation and rate-limited, below.
    assert len(CORPUS) >= 25


async def test_link_refusals_specific_to_visits(client: Client, identities: Identities) -> None:
    first = await book_by_gp(client, identities)
    second = await book_by_gp(client, identities)
    citizen = token_of(first["links"]["citizen"])
    mismatch = await ws_join(client, citizen, second["visit"])
    assert mismatch["code"] == "token-visit-mismatch"
    # A GP of another practice may not read this practice's visit.
    other_gp = identities.praksis.sign(sector="general-practice", role="gp", org="praksis-99")
    response = await client.get(
        f"/api/visits/{first['visit']}", headers={"Authorization": f"Bearer {other_gp}"}
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    reasons = {r.reason for r in await client.app[appkeys.AUDIT].query(visit=second["visit"])}
    assert "token-visit-mismatch" in reasons


async def test_each_sector_and_key_type_is_accepted_for_what_it_may_do(
    client: Client, identities: Identities
) -> None:
    visit = await book_by_gp(client, identities)  # EdDSA, general practice
    # ES256 and RS256, each for an organisation its issuer speaks for.
    for token in (identities.nurse(), identities.specialist()):
        response = await client.get("/api/visits", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200, await response.text()
    joined = await ws_join(client, token_of(visit["links"]["citizen"]), visit["visit"])
    assert joined["type"] == "joined"
    records = await client.app[appkeys.AUDIT].query(visit=visit["visit"])
    join = next(r for r in records if r.action == "join")
    assert (join.result, join.role, join.sector, join.client) == (
        "allowed",
        "citizen",
        "citizen",
        "127.0.0.1",
    )


async def test_role_escalation_over_signaling_is_refused(
    client: Client, identities: Identities
) -> None:
    visit = await book_by_gp(client, identities)
    ws = await client.ws_connect("/ws")
    await ws.send_json(
        {"type": "join", "token": token_of(visit["links"]["citizen"]), "visit": visit["visit"]}
    )
    assert (await ws.receive_json(timeout=10))["type"] == "joined"
    for escalation in ({"type": "end"}, {"type": "admit", "participant": "p-x"}):
        await ws.send_json(escalation)
        error = await ws.receive_json(timeout=10)
        assert (error["code"], error["fatal"]) == ("forbidden", False), error
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=10))["type"] == "pong"
    # Reading data: the citizen's link opens no HTTP data endpoint either.
    for path in ("/api/audit", f"/api/visits/{visit['visit']}"):
        response = await client.get(
            path, headers={"Authorization": f"Bearer {token_of(visit['links']['citizen'])}"}
        )
        assert response.status == 403, path
    refused = [
        r
        for r in await client.app[appkeys.AUDIT].query(visit=visit["visit"])
        if r.result == "refused"
    ]
    assert {r.action for r in refused} >= {"end-visit", "admit"}

    # The nurse hosts an assisted visit and may end it for everyone.
    nurse = await client.ws_connect("/ws")
    await nurse.send_json(
        {"type": "join", "token": token_of(visit["links"]["nurse"]), "visit": visit["visit"]}
    )
    assert (await nurse.receive_json(timeout=10))["type"] == "joined"
    await nurse.send_json({"type": "end"})
    for socket in (ws, nurse):
        while (message := await socket.receive(timeout=10)).type is WSMsgType.TEXT:
            if json.loads(message.data)["type"] == "visit-ended":
                assert json.loads(message.data)["reason"] == "ended"
                break
        else:
            pytest.fail("no visit-ended")
    again = await ws_join(client, token_of(visit["links"]["citizen"]), visit["visit"])
    assert again["code"] == "visit-closed"


async def test_revocation_is_immediate_and_closes_live_sessions(
    client: Client, identities: Identities
) -> None:
    visit = await book_by_gp(client, identities)
    link = token_of(visit["links"]["citizen"])
    jti = jwt.decode(link, options={"verify_signature": False})["jti"]
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": link, "visit": visit["visit"]})
    assert (await ws.receive_json(timeout=10))["type"] == "joined"

    nurse = identities.nurse()
    response = await client.post(
        "/api/admin/revocations", json={"jti": jti}, headers={"Authorization": f"Bearer {nurse}"}
    )
    assert response.status == 403  # only admins revoke
    response = await client.post(
        "/api/admin/revocations",
        json={"jti": jti},
        headers={"Authorization": f"Bearer {identities.admin()}"},
    )
    assert response.status == 201
    assert (await response.json())["closed_sessions"] == 1
    error = await ws.receive_json(timeout=10)
    assert (error["code"], error["fatal"]) == ("token-revoked", True)
    assert (await ws.receive(timeout=10)).type is WSMsgType.CLOSE
    again = await ws_join(client, link, visit["visit"])
    assert again["code"] == "token-revoked"


async def test_failed_authentications_are_rate_limited_per_address(
    aiohttp_client: Any, settings: Settings, identities: Identities
) -> None:
    configured = replace(settings, trust_file=identities.trust_file, auth_failures_per_minute=3)
    limited: Client = await aiohttp_client(create_app(configured))
    for _ in range(3):
        response = await limited.post(
            "/api/visits", json={}, headers={"Authorization": "Bearer nope"}
        )
        assert response.status == 401
    response = await limited.post(
        "/api/visits",
        json={"participants": [{"role": "citizen"}]},
        headers={"Authorization": f"Bearer {identities.gp()}"},
    )
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "rate-limited"
    assert (await ws_join(limited, "nope", "v"))["code"] == "rate-limited"
    # Behind a trusted proxy, another citizen's address is not affected.
    proxied = replace(configured, trusted_proxies=("127.0.0.1",))
    other: Client = await aiohttp_client(create_app(proxied))
    response = await other.post(
        "/api/visits",
        json={"participants": [{"role": "citizen"}]},
        headers={"Authorization": f"Bearer {identities.gp()}", "X-Forwarded-For": "198.51.100.7"},
    )
    assert response.status == 201
    records = await other.app[appkeys.AUDIT].query()
    assert records[-1].client == "198.51.100.7"


async def test_the_host_invites_more_people_and_others_may_not(
    client: Client, identities: Identities
) -> None:
    visit = await book_by_gp(client, identities)
    path = f"/api/visits/{visit['visit']}/participants"
    response = await client.post(
        path, json={"role": "interpreter"}, headers={"Authorization": f"Bearer {identities.gp()}"}
    )
    assert response.status == 201
    link = (await response.json())["url"]
    joined = await ws_join(client, token_of(link), visit["visit"])
    assert joined["you"]["role"] == "interpreter"
    # Someone of the same organisation who is not a host role may not invite.
    evaluator = identities.evaluator(org="praksis-7")
    response = await client.post(
        path, json={"role": "relative"}, headers={"Authorization": f"Bearer {evaluator}"}
    )
    assert response.status == 403


async def test_a_token_that_expires_during_the_visit_keeps_its_seat_but_cannot_rejoin(
    client: Client, identities: Identities
) -> None:
    visit = await book_by_gp(client, identities)
    verifier = client.app[appkeys.VERIFIER]
    verifier.leeway = 0
    seat = next(p for p in visit["participants"] if p["role"] == "citizen")["participant"]
    issuer = client.app[appkeys.ISSUER]
    short = issuer.sign(
        sub=seat,
        role=Role.CITIZEN,
        sector=Sector.CITIZEN,
        lifetime=1,
        visit=visit["visit"],
        org="praksis-7",
    )
    expires_at = jwt.decode(short, options={"verify_signature": False})["exp"]
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": short, "visit": visit["visit"]})
    assert (await ws.receive_json(timeout=10))["type"] == "joined"
    # The token's own deadline is the event here: wait until it has passed.
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.2)
    await ws.send_json({"type": "ping", "id": "after-expiry"})
    assert await ws.receive_json(timeout=10) == {"type": "pong", "ref": "after-expiry"}
    again = await ws_join(client, short, visit["visit"])
    assert again["code"] == "token-expired"
    await ws.close()


async def test_the_audit_log_lives_in_postgresql_when_configured(
    aiohttp_client: Any, settings: Settings, identities: Identities, tmp_path: Path
) -> None:
    async with backend_for("postgresql", tmp_path) as backend:
        configured = replace(
            settings, trust_file=identities.trust_file, database_url=backend.url or ""
        )
        pg_client: Client = await aiohttp_client(create_app(configured))
        visit = await book_by_gp(pg_client, identities)
        await ws_join(pg_client, token_of(visit["links"]["citizen"]), visit["visit"])
        response = await pg_client.get(
            "/api/audit",
            params={"visit": visit["visit"]},
            headers={"Authorization": f"Bearer {identities.admin()}"},
        )
        records = (await response.json())["records"]
        assert {(r["action"], r["result"]) for r in records} >= {("join", "allowed")}
        assert pg_client.app[appkeys.DATABASE].dialect == "postgresql"
        await pg_client.close()
