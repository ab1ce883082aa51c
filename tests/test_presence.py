"""Who was in a visit's call, read back from its event log."""

from __future__ import annotations

from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.presence import in_call_by_record

VISIT = VisitId("v-1")


def event(kind: EventKind, participant: str | None = None) -> VisitEvent:
    return VisitEvent(VISIT, kind, ParticipantId(participant) if participant else None)


def test_the_latest_call_event_of_each_participant_decides() -> None:
    events = [
        event(EventKind.VISIT_CREATED),
        event(EventKind.PARTICIPANT_INVITED, "p-host"),
        event(EventKind.PARTICIPANT_JOINED, "p-host"),
        event(EventKind.PARTICIPANT_WAITING, "p-waiting"),  # never let in
        event(EventKind.PARTICIPANT_ADMITTED, "p-back"),
        event(EventKind.PARTICIPANT_JOINED, "p-back"),
        event(EventKind.PARTICIPANT_RECONNECTING, "p-back"),
        event(EventKind.PARTICIPANT_JOINED, "p-left"),
        event(EventKind.PARTICIPANT_LEFT, "p-left"),
        event(EventKind.PARTICIPANT_JOINED, "p-removed"),
        event(EventKind.PARTICIPANT_REMOVED, "p-removed"),
        event(EventKind.PARTICIPANT_JOINED, "p-again"),
        event(EventKind.PARTICIPANT_LEFT, "p-again"),
        event(EventKind.PARTICIPANT_RECONNECTED, "p-again"),
        event(EventKind.VISIT_STARTED),
    ]
    assert in_call_by_record(events) == {"p-host", "p-back", "p-again"}
    assert in_call_by_record([]) == set()
