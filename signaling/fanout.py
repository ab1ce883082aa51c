"""What the people in a call are told of each call event: socket messages, by audience."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rooms.call import (
    AssistingChanged,
    CallEvent,
    FellBackToPhone,
    MediaFailed,
    MediaRestarted,
    ParticipantDeclined,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantReadmitted,
    ParticipantReconnecting,
    ParticipantWaiting,
)
from rooms.ids import ParticipantId
from signaling import down


@dataclass(frozen=True)
class Notice:
    """`message` for everyone in the call (but `exclude`), or for its hosts only."""

    message: dict[str, Any]
    hosts_only: bool = False
    exclude: ParticipantId | None = None


def notices(event: CallEvent, describe: Callable[[ParticipantId], dict[str, Any]]) -> list[Notice]:
    """The messages `event` sends; `describe` gives a participant as the pages show it."""
    match event:
        case ParticipantJoined(member=member, rejoining=rejoining):
            kind = down.ParticipantReconnected if rejoining else down.ParticipantJoined
            who = member.participant
            return [Notice(kind(participant=describe(who)).wire(), exclude=who)]
        case ParticipantWaiting(member=member, repeat=repeat):
            waiting = down.Waiting(participant=describe(member.participant), repeat=repeat)
            return [Notice(waiting.wire(), hosts_only=True)]
        case ParticipantDeclined(member=member) | ParticipantLeft(member=member, waiting=True):
            ended = down.WaitingEnded(participant=member.participant)
            return [Notice(ended.wire(), hosts_only=True)]
        case ParticipantReadmitted(participant=participant):
            return [Notice(down.Readmitted(participant=participant).wire(), hosts_only=True)]
        case ParticipantReconnecting(member=member):
            return [Notice(down.ParticipantReconnecting(participant=member.participant).wire())]
        case ParticipantLeft(member=member):
            return [Notice(down.ParticipantLeft(participant=member.participant).wire())]
        case MediaFailed(member=member):
            who = member.participant
            return [Notice(down.ParticipantReconnecting(participant=who).wire(), exclude=who)]
        case MediaRestarted(member=member, restored=True):
            who = member.participant
            back = down.ParticipantReconnected(participant=describe(who))
            return [Notice(back.wire(), exclude=who)]
        case AssistingChanged(member=member, on=on):
            changed = down.AssistingChanged(participant=member.participant, on=on)
            return [Notice(changed.wire())]
        case FellBackToPhone(member=member):
            return [Notice(down.FallbackPhoneAnnounced(by=member.participant).wire())]
    return []
