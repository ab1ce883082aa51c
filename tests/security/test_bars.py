"""Removal and decline stick: a removed participant stays out (a fresh tab of the same link too)
until a host lets them in again; a declined guest may knock again only after a pause, and the
host sees that knock as a repeat."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from rooms.ids import ParticipantId
from rooms.roles import Role
from server import appkeys
from server.app import create_app
from server.config import Settings
from tests.conftest import book
from tests.security.sockets import Client, Socket, closed_with, join, next_of


async def knock(client: Client, token: str, visit: str) -> tuple[Socket, dict[str, Any]]:
    """Open a fresh socket with the link; the first thing the server says."""
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    first: dict[str, Any] = await ws.receive_json(timeout=15)
    return ws, first


async def test_a_removed_participant_stays_out_until_the_host_readmits_them(
    client: Client,
) -> None:
    visit, tokens = await book(client.app, waiting_room=True)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    citizen_id = (await next_of(gp, "waiting"))["participant"]["participant"]
    await gp.send_json({"type": "admit", "participant": citizen_id})
    await next_of(citizen, "admitted")

    await gp.send_json({"type": "remove", "participant": citizen_id})
    assert (await next_of(citizen, "error"))["code"] == "removed"
    assert (await closed_with(citizen))[0] == 4000
    await next_of(gp, "participant-left")

    # The same link in a fresh tab, twice: refused by name, and the host is not bothered.
    for _ in range(2):
        again, first = await knock(client, tokens["citizen"], visit.id)
        assert (first["type"], first["code"], first["fatal"]) == ("error", "barred", True)
        assert (await closed_with(again))[0] == 4000
    stored = await client.app[appkeys.STORE].get(visit.id)
    assert stored.removed == {ParticipantId(citizen_id)}  # in the live store, for every node

    # Only a host may let them in again.
    nurse, _ = await join(client, tokens["nurse"], visit.id)
    await nurse.send_json({"type": "readmit", "participant": citizen_id, "id": "r1"})
    refused = await next_of(nurse, "error")
    assert (refused["code"], refused["ref"]) == ("forbidden", "r1")

    await gp.send_json({"type": "readmit", "participant": citizen_id, "id": "r2"})
    readmitted = await next_of(gp, "readmitted")
    assert readmitted["participant"] == citizen_id
    citizen, joined = await join(client, tokens["citizen"], visit.id)
    assert joined["waiting"] is False  # the host has let them in already
    assert (await client.app[appkeys.STORE].get(visit.id)).removed == set()

    await gp.send_json({"type": "readmit", "participant": citizen_id, "id": "r3"})
    assert (await next_of(gp, "error"))["code"] == "not-removed"


async def test_a_host_joining_later_sees_who_is_barred(client: Client) -> None:
    visit, tokens = await book(client.app, Role.CITIZEN, Role.GP, Role.SPECIALIST)
    gp, _ = await join(client, tokens["gp"], visit.id)
    _citizen, joined = await join(client, tokens["citizen"], visit.id)
    citizen_id = joined["you"]["participant"]
    await next_of(gp, "participant-joined")
    await gp.send_json({"type": "remove", "participant": citizen_id})
    await next_of(gp, "participant-left")
    _specialist, joined = await join(client, tokens["specialist"], visit.id)
    assert [p["participant"] for p in joined["barred"]] == [citizen_id]
    assert joined["barred"][0]["role"] == "citizen"


@pytest.fixture
async def pause_client(aiohttp_client: Any, settings: Settings) -> Client:
    made: Client = await aiohttp_client(create_app(replace(settings, knock_pause=3.0)))
    return made


async def test_a_declined_guest_may_knock_again_only_after_the_pause_and_as_a_repeat(
    pause_client: Client,
) -> None:
    client = pause_client
    visit, tokens = await book(client.app, waiting_room=True)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    first_knock = await next_of(gp, "waiting")
    assert first_knock["repeat"] is False
    citizen_id = first_knock["participant"]["participant"]
    await gp.send_json({"type": "decline", "participant": citizen_id})
    assert (await next_of(citizen, "error"))["code"] == "declined"
    await closed_with(citizen)
    declined_at = time.monotonic()

    again, first = await knock(client, tokens["citizen"], visit.id)
    assert (first["type"], first["code"], first["fatal"]) == ("error", "knock-too-soon", True)
    assert 0 < first["retry_after"] <= 3.0
    assert (await closed_with(again))[0] == 4000

    # Knock until the pause is over (the server says how long to wait each time).
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "the guest could never knock again"
        again, first = await knock(client, tokens["citizen"], visit.id)
        if first["type"] == "joined":
            break
        assert first["code"] == "knock-too-soon"
        await closed_with(again)
        await asyncio.sleep(min(first["retry_after"], 0.2))
    assert time.monotonic() - declined_at >= 2.9
    assert first["waiting"] is True
    repeat = await next_of(gp, "waiting")
    assert (repeat["participant"]["participant"], repeat["repeat"]) == (citizen_id, True)
    await gp.send_json({"type": "admit", "participant": citizen_id})
    await next_of(again, "admitted")


async def test_the_knock_pause_is_a_setting(client: Client) -> None:
    app: web.Application = client.app
    assert app[appkeys.SETTINGS].knock_pause == 60.0
    assert Settings.load({"SCREENVISIT_KNOCK_PAUSE": "5"}).knock_pause == 5.0
