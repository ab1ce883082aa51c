"""Visits as clinicians run them, over the real signaling socket: waiting room, admission,
assisted visits, reconnects and their grace period, timeouts and the host's controls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import VisitId
from rooms.janitor import EmptyVisitJanitor
from rooms.roles import Role
from rooms.visit import VisitKind, VisitState
from server import appkeys
from server.app import create_app
from server.config import Settings
from tests.conftest import book

Client = TestClient[web.Request, web.Application]
Socket = aiohttp.ClientWebSocketResponse


async def next_of(ws: Socket, kind: str) -> dict[str, Any]:
    """The next message of `kind`, skipping others (tracks, media-state, ...)."""
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type is WSMsgType.TEXT, f"socket ended waiting for {kind}: {msg}"
        data: dict[str, Any] = json.loads(msg.data)
        if data["type"] == kind:
            return data


async def join(client: Client, token: str, visit: str) -> tuple[Socket, dict[str, Any]]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": token, "visit": visit})
    return ws, await next_of(ws, "joined")


async def kinds(client: Client, visit: VisitId) -> list[str]:
    return [e.kind.value for e in await client.app[appkeys.EVENTS].for_visit(visit)]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    """Re-check a condition the test cannot subscribe to (a timer in the server)."""
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_citizen_waits_until_the_gp_lets_them_in(client: Client) -> None:
    visit, tokens = await book(client.app, waiting_room=True)
    citizen, joined = await join(client, tokens["citizen"], visit.id)
    assert joined["waiting"] is True and joined["participants"] == []
    await citizen.send_json({"type": "offer", "sdp": "v=0"})
    assert (await next_of(citizen, "error"))["code"] == "not-admitted"

    gp, gp_joined = await join(client, tokens["gp"], visit.id)
    assert gp_joined["waiting"] is False and gp_joined["you"]["host"] is True
    assert [p["role"] for p in gp_joined["waiting_room"]] == ["citizen"]
    citizen_id = gp_joined["waiting_room"][0]["participant"]

    await gp.send_json({"type": "admit", "participant": citizen_id})
    admitted = await next_of(citizen, "admitted")
    assert [p["role"] for p in admitted["participants"]] == ["gp"]
    assert admitted["recv"] == {"audio": 1, "video": 1}
    assert (await next_of(gp, "participant-joined"))["participant"]["role"] == "citizen"
    assert (await next_of(gp, "waiting-ended"))["participant"] == citizen_id
    stored = await client.app[appkeys.STORE].get(visit.id)
    assert stored.state is VisitState.IN_PROGRESS
    assert {"participant-waiting", "participant-admitted", "visit-started"} <= set(
        await kinds(client, visit.id)
    )


async def test_every_arrival_notifies_the_host_and_a_declined_one_is_told(client: Client) -> None:
    visit, tokens = await book(client.app, Role.CITIZEN, Role.RELATIVE, Role.GP, waiting_room=True)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    first = await next_of(gp, "waiting")
    relative, _ = await join(client, tokens["relative"], visit.id)
    second = await next_of(gp, "waiting")
    assert [first["participant"]["role"], second["participant"]["role"]] == ["citizen", "relative"]

    # The same person again (a reload in the waiting room) is announced again.
    await citizen.close()
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    again = await next_of(gp, "waiting")
    assert again["participant"]["participant"] == first["participant"]["participant"]

    await gp.send_json({"type": "decline", "participant": second["participant"]["participant"]})
    declined = await next_of(relative, "error")
    assert (declined["code"], declined["fatal"]) == ("declined", True)
    assert (await relative.receive(timeout=10)).type is WSMsgType.CLOSE
    await gp.send_json({"type": "admit-all"})
    await next_of(citizen, "admitted")
    assert "participant-declined" in await kinds(client, visit.id)


async def test_hosts_enter_directly_and_the_waiting_room_can_be_switched_off(
    client: Client,
) -> None:
    visit, tokens = await book(client.app, kind=VisitKind.ASSISTED, waiting_room=True)
    _nurse, joined = await join(client, tokens["nurse"], visit.id)
    assert joined["waiting"] is False  # the nurse hosts an assisted visit
    open_visit, open_tokens = await book(client.app, waiting_room=False)
    _citizen, joined = await join(client, open_tokens["citizen"], open_visit.id)
    assert joined["waiting"] is False


async def test_an_assisted_visit_records_that_the_citizen_took_part_assisted(
    client: Client,
) -> None:
    visit, tokens = await book(client.app, kind=VisitKind.ASSISTED, waiting_room=True)
    nurse, joined = await join(client, tokens["nurse"], visit.id)
    await nurse.send_json({"type": "assisting", "on": True})
    assert (await next_of(nurse, "assisting"))["on"] is True
    gp, gp_joined = await join(client, tokens["gp"], visit.id)
    nurse_seen = next(p for p in gp_joined["participants"] if p["role"] == "nurse")
    assert nurse_seen["assisting"] is True
    await gp.send_json({"type": "assisting", "on": True})
    assert (await next_of(gp, "error"))["code"] == "forbidden"
    events = await client.app[appkeys.EVENTS].for_visit(visit.id)
    assisted = [e for e in events if e.kind is EventKind.CITIZEN_ASSISTED]
    assert [(e.role, e.data) for e in assisted] == [("nurse", {"on": True})]
    assert joined["you"]["participant"] == assisted[0].participant


async def test_a_reconnect_inside_the_grace_period_keeps_the_seat(client: Client) -> None:
    visit, tokens = await book(client.app, waiting_room=True)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    waiting = await next_of(gp, "waiting")
    await gp.send_json({"type": "admit", "participant": waiting["participant"]["participant"]})
    await next_of(citizen, "admitted")

    await citizen.close()  # the network drops, or the page reloads: no 'leave'
    dropped = await next_of(gp, "participant-reconnecting")
    assert dropped["participant"] == waiting["participant"]["participant"]
    citizen, joined = await join(client, tokens["citizen"], visit.id)
    assert (joined["waiting"], joined["reconnect"]) == (False, True)
    assert (await next_of(gp, "participant-reconnected"))["participant"]["role"] == "citizen"
    assert {"participant-reconnecting", "participant-reconnected"} <= set(
        await kinds(client, visit.id)
    )


@pytest.fixture
async def quick_client(aiohttp_client: Any, settings: Settings) -> Client:
    quick = replace(settings, reconnect_grace=0.3, departure_timeout=0.3)
    made: Client = await aiohttp_client(create_app(quick))
    return made


async def test_a_reconnect_after_the_grace_period_needs_admission(quick_client: Client) -> None:
    client = quick_client
    visit, tokens = await book(client.app, waiting_room=True)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    waiting = await next_of(gp, "waiting")
    await gp.send_json({"type": "admit", "participant": waiting["participant"]["participant"]})
    await next_of(citizen, "admitted")
    await citizen.close()
    await next_of(gp, "participant-reconnecting")
    left = await next_of(gp, "participant-left")  # the grace period ran out
    assert left["participant"] == waiting["participant"]["participant"]
    _citizen, joined = await join(client, tokens["citizen"], visit.id)
    assert joined["waiting"] is True
    await next_of(gp, "waiting")


async def test_a_visit_everyone_left_ends_after_the_departure_timeout(
    quick_client: Client,
) -> None:
    client = quick_client
    visit, tokens = await book(client.app)
    gp, _ = await join(client, tokens["gp"], visit.id)
    await gp.send_json({"type": "leave"})
    assert (await gp.receive(timeout=10)).type is WSMsgType.CLOSE
    store = client.app[appkeys.STORE]

    async def ended() -> bool:
        return (await store.get(visit.id)).state is VisitState.ENDED

    await eventually(ended)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "token": tokens["citizen"], "visit": visit.id})
    assert (await next_of(ws, "error"))["code"] == "visit-closed"
    ended_event = [
        e
        for e in await client.app[appkeys.EVENTS].for_visit(visit.id)
        if e.kind is EventKind.VISIT_ENDED
    ]
    assert ended_event[0].data == {"reason": "everyone-left"}


async def test_the_host_moderates_and_everyone_chats(client: Client) -> None:
    visit, tokens = await book(client.app, Role.CITIZEN, Role.RELATIVE, Role.GP)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, citizen_joined = await join(client, tokens["citizen"], visit.id)
    relative, relative_joined = await join(client, tokens["relative"], visit.id)
    citizen_id = citizen_joined["you"]["participant"]
    relative_id = relative_joined["you"]["participant"]

    await citizen.send_json({"type": "chat", "text": "Kan I høre mig?"})
    for ws in (gp, citizen, relative):
        line = await next_of(ws, "chat")
        assert (line["participant"], line["text"]) == (citizen_id, "Kan I høre mig?")

    await citizen.send_json({"type": "remove", "participant": relative_id})
    assert (await next_of(citizen, "error"))["code"] == "forbidden"

    await gp.send_json({"type": "mute-request", "participant": citizen_id})
    assert (await next_of(citizen, "mute-request"))["by"] == gp_id(visit, tokens)

    await gp.send_json({"type": "remove", "participant": relative_id})
    removed = await next_of(relative, "error")
    assert (removed["code"], removed["fatal"]) == ("removed", True)
    assert (await next_of(citizen, "participant-left"))["participant"] == relative_id

    await gp.send_json({"type": "fallback-phone"})
    assert (await next_of(citizen, "fallback-phone"))["by"] == gp_id(visit, tokens)
    recorded = await kinds(client, visit.id)
    assert {"participant-removed", "visit-fell-back-to-phone"} <= set(recorded)
    # Chat stays out of every record.
    events = await client.app[appkeys.EVENTS].for_visit(visit.id)
    assert "Kan I høre mig" not in repr(events)


def gp_id(visit: Any, tokens: dict[str, str]) -> str:
    import jwt

    sub: str = jwt.decode(tokens["gp"], options={"verify_signature": False})["sub"]
    return sub


async def test_a_media_restart_keeps_the_seat(client: Client) -> None:
    visit, tokens = await book(client.app)
    gp, _ = await join(client, tokens["gp"], visit.id)
    citizen, _ = await join(client, tokens["citizen"], visit.id)
    await citizen.send_json({"type": "media-restart"})
    restarted = await next_of(citizen, "media-restarted")
    assert restarted["recv"] == {"audio": 1, "video": 1}
    assert "media-restarted" in await kinds(client, visit.id)
    await gp.close()


async def test_a_visit_nobody_joined_closes_after_the_empty_timeout(
    aiohttp_client: Any, settings: Settings
) -> None:
    client: Client = await aiohttp_client(create_app(replace(settings, empty_timeout=0.2)))
    visit, _tokens = await book(client.app)
    joined_visit, joined_tokens = await book(client.app)
    gp, _ = await join(client, joined_tokens["gp"], joined_visit.id)
    store = client.app[appkeys.STORE]
    planned_minutes = (await store.get(visit.id)).planned_minutes
    assert planned_minutes > 0
    # Pretend both were booked for an hour ago: their planned end plus the timeout have passed.
    for booked in (visit.id, joined_visit.id):
        await store.update(booked, lambda v: setattr(v, "created_at", v.created_at - 3600))
        client.app[appkeys.JANITOR].watch(await store.get(booked))

    async def ended() -> list[VisitEvent]:
        events = await client.app[appkeys.EVENTS].for_visit(visit.id)
        return [e for e in events if e.kind is EventKind.VISIT_ENDED]

    async def closed() -> bool:
        # The janitor records the end after storing it: wait for the record.
        return bool(await ended())

    await eventually(closed)
    assert (await store.get(visit.id)).state is VisitState.ENDED
    assert (await ended())[0].data == {"reason": "nobody-joined"}
    # The visit someone joined is left alone, though its deadline has passed just the same.
    assert (await store.get(joined_visit.id)).state is VisitState.OPEN
    again, _ = await book(client.app)
    await store.update(again.id, lambda v: setattr(v, "created_at", v.created_at - 3600))
    janitor = EmptyVisitJanitor(store, client.app[appkeys.EVENTS], empty_timeout=0.2)
    for booked in (again.id, joined_visit.id):
        janitor.watch(await store.get(booked))
    assert await janitor.sweep() == [again.id]
    await gp.close()
