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
            kind = "participant-reconnected" if rejoining else "participant-joined"
            who = member.participant
            return [Notice({"type": kind, "participant": describe(who)}, exclude=who)]
        case ParticipantWaiting(member=member, repeat=repeat):
            waiting = {"type": "waiting", "participant": describe(member.participant)}
            return [Notice({**waiting, "repeat": repeat}, hosts_only=True)]
        case ParticipantDeclined(member=member) | ParticipantLeft(member=member, waiting=True):
            ended = {"type": "waiting-ended", "participant": member.participant}
            return [Notice(ended, hosts_only=True)]
        case ParticipantReadmitted(participant=participant):
            return [Notice({"type": "readmitted", "participant": participant}, hosts_only=True)]
        case ParticipantReconnecting(member=member):
            return [Notice({"type": "participant-reconnecting", "participant": member.participant})]
        case ParticipantLeft(member=member):
            return [Notice({"type": "participant-left", "participant": member.participant})]
        case MediaFailed(member=member):
            who = member.participant
            return [Notice({"type": "participant-reconnecting", "participant": who}, exclude=who)]
        case MediaRestarted(member=member, restored=True):
            who = member.participant
            back = {"type": "participant-reconnected", "participant": describe(who)}
            return [Notice(back, exclude=who)]
        case AssistingChanged(member=member, on=on):
            return [Notice({"type": "assisting", "participant": member.participant, "on": on})]
        case FellBackToPhone(member=member):
            return [Notice({"type": "fallback-phone", "by": member.participant})]
    return []
