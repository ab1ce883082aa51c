"""Who is on this node now, counted from its hubs when asked (a metrics scrape)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from signaling.registry import HubRegistry


@dataclass(frozen=True)
class Census:
    #: Visits with someone in the call (or expected back) on this node.
    visits_active: int = 0
    #: People in the call, by (role, sector).
    participants: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: People in a waiting room, not yet admitted.
    waiting: int = 0


def census(hubs: HubRegistry) -> Census:
    active = waiting = 0
    participants: Counter[tuple[str, str]] = Counter()
    for hub in list(hubs.hubs.values()):
        if hub.in_call:
            active += 1
        for participant in list(hub.in_call):
            seat = hub.describe(participant)
            participants[(str(seat["role"]), str(seat["sector"]))] += 1
        waiting += len(hub.waiting())
    return Census(active, participants, waiting)
