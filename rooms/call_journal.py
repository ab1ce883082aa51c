"""Which row of the event log each call event is (if any): the one mapping from the call's
typed events to the evaluators' record."""

from __future__ import annotations

from rooms.call import (
    AssistingChanged,
    CallEvent,
    ConnectionReplaced,
    ContentShared,
    FellBackToPhone,
    FirstFrame,
    MediaFailed,
    MediaRestarted,
    Member,
    ParticipantAdmitted,
    ParticipantDeclined,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantReadmitted,
    ParticipantReconnecting,
    ParticipantRemoved,
    ParticipantWaiting,
    VisitEnded,
    VisitMoved,
    VisitOpened,
    VisitStarted,
)
from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import VisitId


def visit_event(visit: VisitId, org: str | None, event: CallEvent) -> VisitEvent | None:
    """The event-log row of `event`, or None for what is not recorded."""
    member: Member | None = None
    data: dict[str, object] = {}
    match event:
        case ConnectionReplaced() | ParticipantReadmitted():
            return None
        case ParticipantWaiting(member=member):
            kind = EventKind.PARTICIPANT_WAITING
        case ParticipantAdmitted(member=member):
            kind = EventKind.PARTICIPANT_ADMITTED
        case ParticipantJoined(member=member, reconnect=reconnect):
            kind = EventKind.PARTICIPANT_RECONNECTED if reconnect else EventKind.PARTICIPANT_JOINED
        case ParticipantDeclined(member=member):
            kind = EventKind.PARTICIPANT_DECLINED
        case ParticipantRemoved(member=member):
            kind = EventKind.PARTICIPANT_REMOVED
        case ParticipantReconnecting(member=member, reason=reason):
            kind, data = EventKind.PARTICIPANT_RECONNECTING, {"reason": reason}
        case ParticipantLeft(member=member, reason=reason):
            kind, data = EventKind.PARTICIPANT_LEFT, {"reason": reason}
        case MediaFailed(member=member, state=state, reason=reason):
            kind, data = EventKind.MEDIA_FAILED, {"state": state, "reason": reason}
        case MediaRestarted(member=member):
            kind = EventKind.MEDIA_RESTARTED
        case AssistingChanged(member=member, on=on):
            kind, data = EventKind.CITIZEN_ASSISTED, {"on": on}
        case FellBackToPhone(member=member):
            kind = EventKind.VISIT_FELL_BACK_TO_PHONE
        case FirstFrame(member=member, media=media, direction=direction):
            kind, data = EventKind.MEDIA_FIRST_FRAME, {"media": media, "direction": direction}
        case ContentShared(member=member, source=source, seconds=seconds, started=True):
            kind, data = EventKind.CONTENT_SHARE_STARTED, {"source": source}
        case ContentShared(member=member, source=source, seconds=seconds):
            kind = EventKind.CONTENT_SHARE_STOPPED
            data = {"source": source, "seconds": seconds}
        case VisitOpened():
            kind = EventKind.VISIT_OPENED
        case VisitStarted():
            kind = EventKind.VISIT_STARTED
        case VisitMoved(to_node=to_node):
            kind, data = EventKind.VISIT_MOVED, {"to_node": to_node}
        case VisitEnded(reason=reason):
            kind, data = EventKind.VISIT_ENDED, {"reason": reason}
    return VisitEvent(
        visit=visit,
        kind=kind,
        participant=member.participant if member else None,
        role=member.role if member else None,
        sector=member.sector if member else None,
        org=org,
        data=data,
    )
