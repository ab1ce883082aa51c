"""When a planned visit's invite links open and close: its opening hours.

A link of a visit planned for a time opens `opens_before` seconds before the planned start and
closes `grace` seconds after the planned end. A visit planned for no time is open while it is
live. Once the call is in progress the window no longer bars anyone: a call that runs over is
not over, and whoever drops out of it may come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rooms.errors import EntryRefused
from rooms.visit import Visit, VisitState

#: As in the Danish eHealth video appointment profile: the URL works from 15 minutes before.
DEFAULT_OPENS_BEFORE = 15 * 60.0
DEFAULT_GRACE = 30 * 60.0


class Phase(StrEnum):
    BEFORE = "before"
    OPEN = "open"
    AFTER = "after"


@dataclass(frozen=True)
class LinkWindow:
    opens_before: float = DEFAULT_OPENS_BEFORE
    grace: float = DEFAULT_GRACE

    def __post_init__(self) -> None:
        if self.opens_before < 0 or self.grace < 0:
            raise ValueError("a link window's lead and grace cannot be negative")

    def opens_at(self, visit: Visit) -> float | None:
        if visit.planned_start is None:
            return None
        return visit.planned_start - self.opens_before

    def closes_at(self, visit: Visit) -> float | None:
        if visit.planned_start is None:
            return None
        return visit.planned_start + visit.planned_minutes * 60 + self.grace

    def phase(self, visit: Visit, now: float) -> Phase:
        opens, closes = self.opens_at(visit), self.closes_at(visit)
        if visit.state is VisitState.IN_PROGRESS or opens is None or closes is None:
            return Phase.OPEN
        if now < opens:
            return Phase.BEFORE
        if now >= closes:
            return Phase.AFTER
        return Phase.OPEN

    def check_entry(self, visit: Visit, now: float) -> None:
        """Raise EntryRefused `visit-not-open-yet` (with `retry_after`) or `visit-over` unless a
        link of `visit` opens it at `now`."""
        phase = self.phase(visit, now)
        if phase is Phase.BEFORE:
            opens = self.opens_at(visit)
            assert opens is not None
            raise EntryRefused(
                "visit-not-open-yet",
                f"the visit opens {self.opens_before / 60:.0f} minutes before its start",
                retry_after=opens - now,
            )
        if phase is Phase.AFTER:
            raise EntryRefused("visit-over", "the visit's time is over")
