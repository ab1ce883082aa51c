"""Issuers are bound to the organisations they speak for, and seat tokens to the server's key.

Red-team findings (security issue 15): a municipality's identity provider could mint a token
claiming a hospital's or practice's `org` and list, re-link and cancel that organisation's visits;
an external identity provider could mint a token with a `visit` claim and a seat's `sub` and so
open another organisation's host seat. Every test here drives the real app over HTTP and the
signaling socket and reads the real audit log.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from server import appkeys
from server.app import create_app
from server.config import Settings
from server.trust import TrustConfigError, load_trust_file
from tests.support.identity import AUDIENCE, PRAKSIS, Identities, make_identities
from tests.support.servers import start_server

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return make_identities(tmp_path / "idp")


def _set_issuer(ids: Identities, iss: str, **changes: Any) -> None:
    trust = json.loads(ids.trust_file.read_text())
    for entry in trust["issuers"]:
        if entry["iss"] == iss:
            entry.update(changes)
            for key in [k for k, v in entry.items() if v is None]:
                del entry[key]
    ids.trust_file.write_text(json.dumps(trust))


async def _client(aiohttp_client: Any, settings: Settings, ids: Identities) -> Client:
    configured = replace(settings, trust_file=ids.trust_file, auth_failures_per_minute=10_000)
    made: Client = await aiohttp_client(create_app(configured))
    return made


async def _book(client: Client, token: str, roles: list[str], kind: str) -> dict[str, Any]:
    response = await client.post(
        "/api/visits",
        json={"kind": kind, "participants": [{"role": r} for r in roles]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def _seat(visit: dict[str, Any], role: str) -> str:
    seat: str = next(p for p in visit["participants"] if p["role"] == role)["participant"]
    return seat


async def _ws_join(client: Client, token: str, visit: str) -> dict[str, Any]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    msg = await ws.receive(timeout=10)
    assert msg.type is WSMsgType.TEXT
    data: dict[str, Any] = json.loads(msg.data)
    await ws.close()
    return data


async def _refusals(client: Client, reason: str) -> list[Any]:
    """One entry per refusal: a counted record stands for `count` of them."""
    return [
        r
        for r in await client.app[appkeys.AUDIT].query()
        if r.result == "refused" and r.reason == reason
        for _ in range(r.count)
    ]


# --- organisation binding ---------------------------------------------------------------------


async def test_an_issuer_cannot_speak_for_another_organisation(
    aiohttp_client: Any, settings: Settings, identities: Identities
) -> None:
    client = await _client(aiohttp_client, settings, identities)
    gp = identities.gp()  # praksis-7, from the practices' identity provider
    visit = await _book(client, gp, ["citizen", "nurse", "gp"], "assisted")
    path = f"/api/visits/{visit['visit']}"
    # The municipality's identity provider mints a nurse of the practice: in an assisted visit
    # the nurse is the host, so this token would re-link and cancel the practice's visit.
    forged = identities.kommune.sign(sector="municipality", role="nurse", org="praksis-7")
    attempts = [
        ("GET", "/api/visits", "read-visit"),
        ("GET", path, "read-visit"),
        ("POST", path + "/links", "invite"),
        ("POST", path + "/cancel", "end-visit"),
    ]
    for method, url, _action in attempts:
        response = await client.request(method, url, headers={"Authorization": f"Bearer {forged}"})
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (403, "org-not-allowed"), (url, body)
        assert body["error"]["message"]

    refused = await _refusals(client, "org-not-allowed")
    assert sorted(r.action for r in refused) == sorted(a for _m, _u, a in attempts)
    assert all(r.issuer == identities.kommune.iss for r in refused)
    assert all(r.client == "127.0.0.1" for r in refused)
    assert all(forged not in repr(r) for r in refused)
    # The visit is untouched; its own practice still sees it scheduled.
    response = await client.get(path, headers={"Authorization": f"Bearer {gp}"})
    assert (await response.json())["state"] == "scheduled"
    # The municipality's own organisations are still spoken for.
    own = identities.nurse()  # kommune-851
    response = await client.get("/api/visits", headers={"Authorization": f"Bearer {own}"})
    assert response.status == 200, await response.text()


async def test_an_org_pattern_binds_exactly_and_star_must_be_written(
    aiohttp_client: Any, settings: Settings, identities: Identities
) -> None:
    _set_issuer(identities, identities.kommune.iss, orgs=["kommune-8??"])
    client = await _client(aiohttp_client, settings, identities)
    for org, status in (("kommune-851", 200), ("kommune-101", 403), ("Kommune-851", 403)):
        token = identities.nurse(org=org)
        response = await client.get("/api/visits", headers={"Authorization": f"Bearer {token}"})
        assert response.status == status, (org, await response.text())
    await client.close()

    _set_issuer(identities, identities.kommune.iss, orgs=["*"])
    anywhere = await _client(aiohttp_client, settings, identities)
    token = identities.nurse(org="rh-aalborg")
    response = await anywhere.get("/api/visits", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("orgs", "message"),
    [
        (None, "'orgs'"),
        ([], "'orgs'"),
        ("kommune-*", "'orgs'"),
        ([""], "'orgs'"),
        ([7], "'orgs'"),
    ],
)
def test_a_trust_file_without_orgs_is_refused(
    identities: Identities, orgs: Any, message: str
) -> None:
    _set_issuer(identities, identities.kommune.iss, orgs=orgs)
    with pytest.raises(TrustConfigError, match=message):
        load_trust_file(identities.trust_file, allow_development=False)


async def test_the_app_and_the_server_refuse_to_start_with_a_trust_file_without_orgs(
    settings: Settings, identities: Identities, tmp_path: Path
) -> None:
    _set_issuer(identities, identities.kommune.iss, orgs=None)
    app = create_app(replace(settings, trust_file=identities.trust_file))
    test_server = TestServer(app, host="127.0.0.1")
    with pytest.raises(TrustConfigError, match=f"issuer {identities.kommune.iss}: 'orgs'"):
        await test_server.start_server()
    await test_server.close()

    # The operator's view: the real server process stops at start with the reason, no traceback.
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    env = {"SCREENVISIT_TRUST_FILE": str(identities.trust_file)}
    with pytest.raises(RuntimeError, match="did not start"):
        server = await start_server(server_dir, env=env)
        await server.stop()
    log = (server_dir / "server.log").read_text()
    reason = f"issuer {identities.kommune.iss}: 'orgs' is required"
    assert f"screenvisit: bad trust file: {reason}" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("seat_tokens", [1, "yes"])
def test_seat_tokens_must_be_a_boolean(identities: Identities, seat_tokens: Any) -> None:
    _set_issuer(identities, PRAKSIS, seat_tokens=seat_tokens)
    with pytest.raises(TrustConfigError, match="seat_tokens"):
        load_trust_file(identities.trust_file, allow_development=False)


# --- seat tokens --------------------------------------------------------------------------------


async def test_an_external_identity_provider_cannot_mint_a_seat(
    aiohttp_client: Any, settings: Settings, identities: Identities
) -> None:
    client = await _client(aiohttp_client, settings, identities)
    # A hospital's visit; its GP seat hosts it.
    visit = await _book(client, identities.specialist(), ["citizen", "gp"], "consultation")
    seat = _seat(visit, "gp")
    minted = identities.praksis.sign(
        sub=seat, sector="general-practice", role="gp", org="praksis-7", visit=visit["visit"]
    )
    error = await _ws_join(client, minted, visit["visit"])
    assert (error["type"], error["code"], error["fatal"]) == (
        "error",
        "seat-token-issuer-not-allowed",
        True,
    ), error
    response = await client.post(
        f"/api/visits/{visit['visit']}/links", headers={"Authorization": f"Bearer {minted}"}
    )
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (403, "seat-token-issuer-not-allowed")
    # Even for its own practice's visit: seat tokens come from the server's own key unless the
    # trust file says otherwise.
    own = await _book(client, identities.gp(), ["citizen", "gp"], "consultation")
    own_seat = identities.praksis.sign(
        sub=_seat(own, "gp"),
        sector="general-practice",
        role="gp",
        org="praksis-7",
        visit=own["visit"],
    )
    assert (await _ws_join(client, own_seat, own["visit"]))["code"] == (
        "seat-token-issuer-not-allowed"
    )
    refused = await _refusals(client, "seat-token-issuer-not-allowed")
    assert sorted(r.action for r in refused) == ["invite", "join", "join"]
    assert all(r.issuer == PRAKSIS for r in refused)
    # The server's own links still open the seats.
    joined = await _ws_join(client, visit["links"]["gp"].split("#", 1)[1], visit["visit"])
    assert joined["type"] == "joined", joined


async def test_seat_tokens_from_an_issuer_that_may_mint_them_open_only_its_own_visits(
    aiohttp_client: Any, settings: Settings, identities: Identities
) -> None:
    _set_issuer(identities, PRAKSIS, seat_tokens=True)
    client = await _client(aiohttp_client, settings, identities)
    own = await _book(client, identities.gp(), ["citizen", "gp"], "consultation")
    theirs = await _book(client, identities.specialist(), ["citizen", "gp"], "consultation")

    def seat_token(visit: dict[str, Any]) -> str:
        return identities.praksis.sign(
            sub=_seat(visit, "gp"),
            sector="general-practice",
            role="gp",
            org="praksis-7",
            visit=visit["visit"],
        )

    joined = await _ws_join(client, seat_token(own), own["visit"])
    assert joined["type"] == "joined", joined
    assert joined["you"]["role"] == "gp"

    error = await _ws_join(client, seat_token(theirs), theirs["visit"])
    assert (error["code"], error["fatal"]) == ("seat-token-org-not-allowed", True), error
    path = f"/api/visits/{theirs['visit']}"
    for method, url in (("POST", path + "/links"), ("POST", path + "/cancel")):
        response = await client.request(
            method, url, headers={"Authorization": f"Bearer {seat_token(theirs)}"}
        )
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (403, "seat-token-org-not-allowed")
    records = await client.app[appkeys.AUDIT].query(visit=theirs["visit"])
    refused = [r for r in records if r.reason == "seat-token-org-not-allowed"]
    assert sorted(r.action for r in refused) == ["end-visit", "invite", "join"]
    assert all((r.issuer, r.org, r.result) == (PRAKSIS, "praksis-7", "refused") for r in refused)
    response = await client.get(
        path, headers={"Authorization": f"Bearer {identities.specialist()}"}
    )
    assert (await response.json())["state"] == "scheduled"


# --- malformed tokens ---------------------------------------------------------------------------


def _b64(data: Any) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(header)}.{_b64(claims)}.{_b64('signature')}"


def _kommune_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "https://idp.kommune.test",
        "aud": AUDIENCE,
        "sub": "staff-1",
        "iat": now,
        "exp": now + 600,
        "jti": "j-1",
        "sector": "municipality",
        "role": "nurse",
        "org": "kommune-851",
    }
    claims.update(changes)
    return claims


MALFORMED: dict[str, tuple[Any, str]] = {
    "string nbf": (lambda i: i.nurse(nbf=str(int(time.time()) - 60)), "token-invalid"),
    "boolean iat": (lambda i: i.nurse(iat=True), "token-invalid"),
    "string iat": (lambda i: i.nurse(iat=str(int(time.time()))), "token-invalid"),
    "alg a list": (
        lambda i: _raw_token({"alg": ["ES256"], "kid": "k1"}, _kommune_claims()),
        "token-malformed",
    ),
    "alg an object": (
        lambda i: _raw_token({"alg": {"ES256": 1}, "kid": "k1"}, _kommune_claims()),
        "token-malformed",
    ),
    "alg a number": (
        lambda i: _raw_token({"alg": 256, "kid": "k1"}, _kommune_claims()),
        "token-malformed",
    ),
    "kid an object": (
        lambda i: _raw_token({"alg": "ES256", "kid": {"k": 1}}, _kommune_claims()),
        "token-malformed",
    ),
    "header not an object": (
        lambda i: f"{_b64(['ES256'])}.{_b64(_kommune_claims())}.{_b64('s')}",
        "token-malformed",
    ),
    "claims not an object": (
        lambda i: f"{_b64({'alg': 'ES256', 'kid': 'k1'})}.{_b64([1, 2])}.{_b64('s')}",
        "token-malformed",
    ),
    "deeply nested header": (
        lambda i: (
            f"{base64.urlsafe_b64encode(b'[' * 5000).rstrip(b'=').decode()}."
            f"{_b64(_kommune_claims())}.{_b64('s')}"
        ),
        "token-malformed",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_tokens_are_401_audited_and_rate_limited(
    aiohttp_client: Any, settings: Settings, identities: Identities, case: str
) -> None:
    make, code = MALFORMED[case]
    token = make(identities)
    configured = replace(settings, trust_file=identities.trust_file, auth_failures_per_minute=2)
    client: Client = await aiohttp_client(create_app(configured))
    response = await client.get("/api/visits", headers={"Authorization": f"Bearer {token}"})
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (401, code), body
    error = await _ws_join(client, token, "v-whatever")
    assert (error["code"], error["fatal"]) == (code, True), error
    refused = await _refusals(client, code)
    assert {r.action for r in refused} == {"read-visit", "join"}
    # Two failures from this address: the third attempt, even with a good token, waits.
    response = await client.get(
        "/api/visits", headers={"Authorization": f"Bearer {identities.nurse()}"}
    )
    assert (response.status, (await response.json())["error"]["code"]) == (429, "rate-limited")
