"""The signaling protocol against the real app: every refusal has its code, nothing else breaks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from rooms.roles import Role
from server import appkeys
from signaling.errors import CLOSE_FATAL, CLOSE_REPLACED
from signaling.session import Session
from tests.conftest import book

Client = TestClient[web.Request, web.Application]


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type is WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        data = await receive(ws)
        if data["type"] == kind:
            return data


async def join(client: Client, token: str, visit: str) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    return ws


async def test_joined_describes_the_seat_and_the_others(client: Client) -> None:
    visit, tokens = await book(client.app)
    nurse = await join(client, tokens["nurse"], visit.id)
    joined = await receive(nurse)
    assert joined["type"] == "joined"
    assert joined["you"]["role"] == "nurse" and joined["you"]["sector"] == "municipality"
    assert joined["participants"] == [] and joined["ice_servers"] == []
    started = joined["visit"].pop("started_at")
    assert abs(joined["visit"].pop("now") - time.time()) < 5 and started <= time.time()
    assert joined["visit"] == {"id": visit.id, "kind": "consultation", "state": "open"}

    citizen = await join(client, tokens["citizen"], visit.id)
    joined = await receive(citizen)
    assert [p["role"] for p in joined["participants"]] == ["nurse"]
    assert joined["visit"]["state"] == "in-progress"
    assert joined["visit"]["started_at"] == started  # the call began with the nurse
    arrived = await receive_type(nurse, "participant-joined")
    assert arrived["participant"]["role"] == "citizen"

    await citizen.send_json({"type": "leave"})
    left = await receive_type(nurse, "participant-left")
    assert left["participant"] == joined["you"]["participant"]

    # A hub new on this node (a restart, a takeover) reads when the call began from the record.
    await nurse.send_json({"type": "leave"})
    hubs = client.app[appkeys.HUBS]
    await hubs.wait_empty(expecting=True)
    await hubs.discard(hubs.hubs[visit.id])
    again = await join(client, tokens["nurse"], visit.id)
    assert abs((await receive(again))["visit"]["started_at"] - started) < 0.01
    await again.close()
    await nurse.close()


class QueueChannel:
    """A client channel fed from a queue: the session's own code, with no socket in between."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(self) -> AsyncIterator[str | bytes]:
        while (data := await self.incoming.get()) is not None:
            yield data

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.sent.put(message)

    async def close(self, code: int, reason: str) -> None:
        pass


async def test_joined_comes_first_even_when_the_hub_speaks_during_the_join(client: Client) -> None:
    """A quality change broadcast while a participant is still joining reaches it after `joined`."""
    visit, tokens = await book(client.app)
    channel = QueueChannel()
    session = Session(channel, client.app[appkeys.SIGNALING], client.app[appkeys.HUBS])
    running = asyncio.create_task(session.run())
    session.send({"type": "quality", "participant": "p-other", "level": "poor"})
    await channel.incoming.put(
        json.dumps({"type": "join", "token": tokens["nurse"], "visit": visit.id})
    )
    first, second = await channel.sent.get(), await channel.sent.get()
    assert first["type"] == "joined" and first["you"]["role"] == "nurse"
    assert second == {"type": "quality", "participant": "p-other", "level": "poor"}
    await channel.incoming.put(None)
    await asyncio.wait_for(running, timeout=10)


async def test_malformed_messages_get_codes_and_the_socket_stays_usable(client: Client) -> None:
    visit, tokens = await book(client.app)
    ws = await join(client, tokens["gp"], visit.id)
    assert (await receive(ws))["type"] == "joined"
    cases: list[tuple[Any, str]] = [
        ("{oops", "malformed-json"),
        ("[]", "invalid-message"),
        ('{"type": "teleport"}', "unknown-type"),
        ('{"type": "media-state", "audio": "yes", "video": true}', "invalid-field"),
        (json.dumps({"type": "offer", "sdp": "v=0" + "x" * 70_000}), "message-too-large"),
        ('{"type": "offer", "sdp": "this is not sdp", "id": "o-1"}', "negotiation-failed"),
        (json.dumps({"type": "join", "token": tokens["gp"], "visit": visit.id}), "already-joined"),
    ]
    for raw, code in cases:
        await ws.send_str(raw)
        error = await receive(ws)
        assert (error["type"], error["code"], error["fatal"]) == ("error", code, False), error
    await ws.send_bytes(b"\x00\x01")
    binary_error = await receive(ws)
    assert binary_error.get("code") == "invalid-message", binary_error
    await ws.send_json({"type": "ping", "id": "still-here"})
    assert await receive(ws) == {"type": "pong", "ref": "still-here"}
    await ws.close()


async def test_messages_before_join_are_refused(client: Client) -> None:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "offer", "sdp": "v=0"})
    assert (await receive(ws))["code"] == "join-required"
    await ws.close()


async def fatal_code(client: Client, token: str, visit: str) -> str:
    ws = await join(client, token, visit)
    error = await receive(ws)
    assert error["type"] == "error" and error["fatal"] is True, error
    closing = await ws.receive(timeout=10)
    assert closing.type is WSMsgType.CLOSE and closing.data == CLOSE_FATAL
    code: str = error["code"]
    return code


async def test_bad_and_foreign_tokens_are_refused(client: Client) -> None:
    visit_a, tokens_a = await book(client.app)
    visit_b, _tokens_b = await book(client.app)
    issuer = client.app[appkeys.ISSUER]
    header, payload, signature = tokens_a["citizen"].split(".")
    tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": issuer.iss,
            "aud": issuer.audience,
            "sub": "p-x",
            "iat": now - 99999,
            "exp": now - 3600,
            "jti": "j",
            "sector": "citizen",
            "role": "citizen",
            "visit": visit_a.id,
        },
        issuer.key.private_key,
        "ES256",
        headers={"kid": issuer.key.kid},
    )
    # A correctly signed token that claims visit B but names a seat of visit A.
    seat_a = next(iter(visit_a.seats))
    crossed = issuer.sign(
        sub=seat_a,
        role=Role.CITIZEN,
        sector=visit_a.seats[seat_a].sector,
        lifetime=60,
        visit=visit_b.id,
    )
    assert await fatal_code(client, "garbage", visit_a.id) == "token-malformed"
    assert await fatal_code(client, tampered, visit_a.id) in {
        "token-bad-signature",
        "token-malformed",
    }
    assert await fatal_code(client, expired, visit_a.id) == "token-expired"
    assert await fatal_code(client, tokens_a["citizen"], visit_b.id) == "token-visit-mismatch"
    assert await fatal_code(client, crossed, visit_b.id) == "forbidden"

    # Visit A carries on: its own link still works after all that.
    ws = await join(client, tokens_a["citizen"], visit_a.id)
    assert (await receive(ws))["type"] == "joined"
    await ws.close()


async def test_the_same_seat_from_a_second_socket_replaces_the_first(client: Client) -> None:
    visit, tokens = await book(client.app)
    first = await join(client, tokens["citizen"], visit.id)
    assert (await receive(first))["reconnect"] is False
    second = await join(client, tokens["citizen"], visit.id)
    assert (await receive(second))["reconnect"] is True
    error = await receive(first)
    assert error["code"] == "session-replaced"
    closing = await first.receive(timeout=10)
    assert closing.type is WSMsgType.CLOSE and closing.data == CLOSE_REPLACED
    await second.send_json({"type": "ping"})
    assert (await receive(second))["type"] == "pong"
    await second.close()


async def test_join_and_leave_are_in_the_event_log_without_personal_data(client: Client) -> None:
    visit, tokens = await book(client.app)
    ws = await join(client, tokens["citizen"], visit.id)
    await receive(ws)
    await ws.send_json({"type": "leave"})
    closing = await ws.receive(timeout=10)
    assert closing.type is WSMsgType.CLOSE
    events = await client.app[appkeys.EVENTS].for_visit(visit.id)
    kinds = [e.kind.value for e in events]
    lifecycle = [k for k in kinds if k != "participant-invited"]
    assert lifecycle[:3] == ["visit-created", "participant-joined", "visit-opened"]
    assert kinds.count("participant-invited") == 3  # one per seat
    assert "participant-left" in kinds
    text = repr(events)
    assert tokens["citizen"] not in text and "Bearer" not in text


async def test_the_visit_api_needs_a_clinician_token(client: Client) -> None:
    visit, tokens = await book(client.app)
    response = await client.post("/api/visits", json={"participants": [{"role": "citizen"}]})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "token-missing"
    citizen = {"Authorization": f"Bearer {tokens['citizen']}"}
    response = await client.post(
        "/api/visits", json={"participants": [{"role": "citizen"}]}, headers=citizen
    )
    assert response.status == 403
    issuer = client.app[appkeys.ISSUER]
    gp = issuer.sign(
        sub="gp-7",
        role=Role.GP,
        sector=visit.seats[next(iter(visit.seats))].sector,
        lifetime=60,
        org="demo",
    )
    response = await client.post(
        "/api/visits", data="{nope", headers={"Authorization": f"Bearer {gp}"}
    )
    assert (response.status, (await response.json())["error"]["code"]) == (400, "malformed-json")
