"""One typed event stream: whatever subscribes to the calls' events (metrics, webhooks) sees
each event of every call in order, after the event log; a subscriber that fails stops nothing."""

from __future__ import annotations

from rooms.call import (
    CallEvent,
    ParticipantAdmitted,
    ParticipantJoined,
    ParticipantWaiting,
    VisitOpened,
    VisitStarted,
)
from rooms.ids import VisitId
from server import appkeys
from tests.conftest import book
from tests.test_waiting_room import Client, join, kinds, next_of


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[VisitId, str | None, CallEvent]] = []

    def call_event(self, visit: VisitId, org: str | None, event: CallEvent) -> None:
        self.seen.append((visit, org, event))


class Broken:
    def call_event(self, visit: VisitId, org: str | None, event: CallEvent) -> None:
        raise RuntimeError("a subscriber that fails")


async def test_subscribers_see_every_call_event_in_order(client: Client) -> None:
    recorder = Recorder()
    client.app[appkeys.SIGNALING].call_subscribers.extend([Broken(), recorder])
    visit, tokens = await book(client.app, waiting_room=True)
    gp, _ = await join(client, tokens["gp"], visit.id)
    await join(client, tokens["citizen"], visit.id)
    waiting = await next_of(gp, "waiting")
    await gp.send_json({"type": "admit", "participant": waiting["participant"]["participant"]})
    await next_of(gp, "participant-joined")

    assert {(v, org) for v, org, _event in recorder.seen} == {(visit.id, visit.org)}
    events = [event for _v, _org, event in recorder.seen]
    assert [type(e) for e in events] == [
        ParticipantJoined,
        VisitOpened,
        ParticipantWaiting,
        ParticipantAdmitted,
        ParticipantJoined,
        VisitStarted,
    ]
    assert [e.member.role for e in events if isinstance(e, ParticipantJoined)] == ["gp", "citizen"]
    # The event log got the same, in the same order.
    logged = await kinds(client, visit.id)
    assert logged[-6:] == [
        "participant-joined",
        "visit-opened",
        "participant-waiting",
        "participant-admitted",
        "participant-joined",
        "visit-started",
    ]
