"""Closes visits nobody joined, as LiveKit's empty timeout does for rooms.

A visit still `scheduled` (no one ever came in) at its planned start (or its creation, when it
has none) plus its planned length plus `empty_timeout` is ended, with the reason recorded as
`nobody-joined`: for evaluators a no-show, not a technical failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rooms.errors import InvalidTransition, VisitNotFound
from rooms.eventlog import EventKind, EventLog, VisitEvent
from rooms.ids import VisitId
from rooms.periodic import Periodic
from rooms.store import VisitStore
from rooms.visit import Visit, VisitState

logger = logging.getLogger(__name__)


class EmptyVisitJanitor:
    def __init__(
        self,
        store: VisitStore,
        events: EventLog,
        empty_timeout: float,
        interval: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._events = events
        self._empty_timeout = empty_timeout
        self._clock = clock
        self._deadlines: dict[VisitId, float] = {}
        self._periodic = Periodic("empty-visit-janitor", interval, self.sweep)

    def watch(self, visit: Visit) -> None:
        """(Re)compute the visit's deadline; call when it is booked or its time changes."""
        start = visit.planned_start if visit.planned_start is not None else visit.created_at
        self._deadlines[visit.id] = start + visit.planned_minutes * 60 + self._empty_timeout

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def sweep(self) -> list[VisitId]:
        """End every due visit nobody joined; return their ids."""
        now = self._clock()
        closed = []
        for visit_id, deadline in list(self._deadlines.items()):
            if deadline > now:
                continue
            del self._deadlines[visit_id]
            try:
                visit = await self._store.update(visit_id, _end_if_nobody_came)
            except (VisitNotFound, InvalidTransition):
                continue
            if visit.state is VisitState.ENDED:
                await self._events.append(
                    VisitEvent(
                        visit=visit_id,
                        kind=EventKind.VISIT_ENDED,
                        org=visit.org,
                        data={"reason": "nobody-joined"},
                    )
                )
                closed.append(visit_id)
        return closed


def _end_if_nobody_came(visit: Visit) -> None:
    if visit.state is not VisitState.SCHEDULED:
        raise InvalidTransition("someone joined", visit.state.value)
    visit.transition(VisitState.ENDED)
