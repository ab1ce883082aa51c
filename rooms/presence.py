"""Who was in a visit's call, as its event log tells it: for a node that takes a visit over with
no live record of its call (a single node restarted, or Redis came back empty)."""

from __future__ import annotations

from collections.abc import Iterable

from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import ParticipantId

#: Events after which a participant is in the call (a reconnecting one keeps its seat).
_IN = frozenset(
    {
        EventKind.PARTICIPANT_JOINED,
        EventKind.PARTICIPANT_RECONNECTED,
        EventKind.PARTICIPANT_RECONNECTING,
    }
)
#: Events after which a participant is out of it (removed: `left` follows, but be sure).
_OUT = frozenset({EventKind.PARTICIPANT_LEFT, EventKind.PARTICIPANT_REMOVED})


def in_call_by_record(events: Iterable[VisitEvent]) -> set[ParticipantId]:
    """The participants whose latest call event, in log order, left them in the call."""
    present: set[ParticipantId] = set()
    for event in events:
        if event.participant is None:
            continue
        if event.kind in _IN:
            present.add(event.participant)
        elif event.kind in _OUT:
            present.discard(event.participant)
    return present
