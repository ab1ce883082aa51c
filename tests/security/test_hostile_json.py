"""Hostile JSON (huge integers, deep nesting, wrong types) against a real server process: a 4xx
with a precise code over HTTP, an `error` on the socket, rate-limited, audited as bounded,
counted rows, and never a 500 or a traceback in the server's log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.identity import Identities, make_identities
from tests.support.servers import RunningServer, cli, start_server

HUGE_INT = "1" * 5_000  # over Python's 4,300-digit limit for int("...")
DEEP = "[" * 50_000  # far past the JSON parser's recursion limit, well under 64 KiB
LIMIT = 6  # SCREENVISIT_AUTH_FAILURES_PER_MINUTE in these tests


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return make_identities(tmp_path / "idp")


@pytest.fixture
async def server(tmp_path: Path, identities: Identities) -> AsyncIterator[RunningServer]:
    running = await start_server(
        tmp_path,
        env={
            "SCREENVISIT_TRUST_FILE": str(identities.trust_file),
            "SCREENVISIT_AUTH_FAILURES_PER_MINUTE": str(LIMIT),
            "SCREENVISIT_TRUSTED_PROXIES": "127.0.0.1",
        },
    )
    yield running
    await running.stop()


def assert_no_traceback(server: RunningServer) -> None:
    log = server.log.read_text()
    assert "Traceback" not in log, log[-4000:]


async def audit_rows(server: RunningServer) -> list[dict[str, Any]]:
    code, out, err = await cli(server, "audit", "--json")
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def refusals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many refusals each reason counts, over the (counted) audit rows."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["result"] == "refused":
            counts[row["reason"]] = counts.get(row["reason"], 0) + row["count"]
    return counts


async def audited(server: RunningServer, expected: dict[str, int]) -> list[dict[str, Any]]:
    """The audit rows, as `screenvisit audit` reads them, once they count `expected` (a
    repeat's count reaches the database within the server's flush interval)."""
    async with asyncio.timeout(30):
        while True:
            rows = await audit_rows(server)
            if refusals(rows) == expected:
                return rows
            await asyncio.sleep(0.2)


async def post(
    http: aiohttp.ClientSession, url: str, body: str, token: str, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    async with http.request(
        method,
        url,
        data=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as response:
        data: dict[str, Any] = await response.json()
        return response.status, data


async def test_hostile_json_over_http(server: RunningServer, identities: Identities) -> None:
    gp = identities.gp()
    visits = server.base_url + "/api/visits"
    async with aiohttp.ClientSession() as http:
        status, booked = await post(
            http, visits, json.dumps({"participants": [{"role": "citizen"}]}), gp
        )
        assert status == 201, booked
        visit_url = f"{visits}/{booked['visit']}"
        cases = [
            ("POST", visits, '{"planned_minutes": ' + HUGE_INT + "}", 400, "number-too-large"),
            ("PATCH", visit_url, '{"planned_minutes": -' + HUGE_INT + "}", 400, "number-too-large"),
            ("POST", visits, DEEP, 400, "json-too-deep"),
            ("POST", visits, '{"participants": {"role": [[[]]]}}', 400, "invalid-field"),
        ]
        for method, url, body, want_status, want in cases:
            status, data = await post(http, url, body, gp, method)
            assert (status, data["error"]["code"]) == (want_status, want), (body[:60], data)
            if want == "invalid-field":
                assert data["error"]["field"] == "participants"
        # Malformed documents count against the address like failed tokens: past the limit
        # even a good request from it waits out the minute.
        for _ in range(LIMIT):
            status, data = await post(http, visits, DEEP, gp)
        assert (status, data["error"]["code"]) == (429, "rate-limited")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            server.base_url + "/api/audit",
            # 127.0.0.1 is past its limit by now: the admin comes through the proxy.
            headers={
                "Authorization": f"Bearer {identities.admin()}",
                "X-Forwarded-For": "198.51.100.20",
            },
        ) as response,
    ):
        assert response.status == 200, await response.text()
        over_http = (await response.json())["records"]
    assert {r["reason"]: r["count"] for r in over_http}["rate-limited"] == 3
    rows = await audited(server, {"number-too-large": 2, "json-too-deep": 4, "rate-limited": 3})
    assert all(len(json.dumps(r)) < 600 for r in rows)
    assert_no_traceback(server)


async def ws_send(ws: aiohttp.ClientWebSocketResponse, text: str) -> dict[str, Any]:
    await ws.send_str(text)
    reply: dict[str, Any] = await ws.receive_json(timeout=20)
    return reply


async def test_hostile_json_on_the_socket(server: RunningServer) -> None:
    visit = await server.create_visit()
    citizen = visit["links"]["citizen"].split("#", 1)[1]
    url = server.base_url.replace("http", "ws", 1) + "/ws"
    hostile = [
        (DEEP, "json-too-deep"),
        ('{"type": "join", "token": "t", "visit": "v", "n": ' + HUGE_INT + "}", "number-too-large"),
        ('{"type": "join", "token": 5, "visit": [[[]]]}', "invalid-field"),
        ("[1, 2]", "invalid-message"),
    ]
    async with aiohttp.ClientSession() as http:
        # Joined: each gets a precise, non-fatal error and the session goes on.
        async with http.ws_connect(url) as ws:
            joined = await ws_send(
                ws, json.dumps({"type": "join", "token": citizen, "visit": visit["visit"]})
            )
            assert joined["type"] == "joined", joined
            for text, code in hostile:
                reply = await ws_send(ws, text)
                assert (reply["type"], reply["code"], reply["fatal"]) == ("error", code, False)
            assert (await ws_send(ws, '{"type": "ping", "id": "p"}'))["type"] == "pong"
        # Before join: the first message of a fresh socket, each time; the same errors...
        for text, code in hostile:
            async with http.ws_connect(url) as ws:
                reply = await ws_send(ws, text)
                assert (reply["type"], reply["code"]) == ("error", code), reply
        # ...counted against the address: past the limit, the socket is refused and closed.
        async with http.ws_connect(url) as ws:
            replies = [await ws_send(ws, DEEP) for _ in range(LIMIT - len(hostile) + 1)]
            assert (replies[-1]["code"], replies[-1]["fatal"]) == ("rate-limited", True)
            assert (await ws.receive(timeout=20)).type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
            )
    rows = await audited(
        server,
        {
            "json-too-deep": 4,
            "number-too-large": 2,
            "invalid-field": 2,
            "invalid-message": 2,
            "rate-limited": 1,
        },
    )
    # The joined session's refusals name its seat and visit (and count nothing against the
    # address); the others name no one.
    seated = [r for r in rows if r["result"] == "refused" and r["subject"] is not None]
    assert {r["reason"] for r in seated} == {code for _, code in hostile}
    assert {(r["subject"], r["visit"]) for r in seated} == {
        (joined["you"]["participant"], visit["visit"])
    }
    assert all(len(json.dumps(r)) < 600 for r in rows)
    assert_no_traceback(server)
