"""The console's live view of an organisation's visits, streamed as Server-Sent Events.

Live state is read from where it already is: the bookings from the visit store, and who waits or
is in the call from the event log (participant waiting, admitted, joined, left, ...), which every
node writes. Nothing in the signaling layer is touched: `ConsoleChanges.notify` listens to
the durable event log on this node, so that an append wakes the organisation's open consoles at
once; events written on another node, and booking changes that write no event, are picked up by
a re-read every `POLL_SECONDS`. A snapshot is sent only when it differs from the last one sent.

Names are part of a snapshot: the stream is only for signed-in staff of that organisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

from rooms.eventlog import EventKind, EventLog, VisitEvent
from rooms.ids import VisitId
from rooms.store import VisitStore
from rooms.visit import Visit

POLL_SECONDS = 3.0
#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
#: Finished visits stay on the console this long after they ended or were cancelled.
FINISHED_SHOWN_SECONDS = 12 * 3600
MAX_VISITS = 200

_STATUS = {
    EventKind.PARTICIPANT_WAITING: "waiting",
    EventKind.PARTICIPANT_ADMITTED: "admitted",
    EventKind.PARTICIPANT_JOINED: "in-call",
    EventKind.PARTICIPANT_RECONNECTED: "in-call",
    EventKind.PARTICIPANT_RECONNECTING: "reconnecting",
    EventKind.PARTICIPANT_DECLINED: "declined",
    EventKind.PARTICIPANT_LEFT: "left",
    EventKind.PARTICIPANT_REMOVED: "removed",
}


class ConsoleChanges:
    """Wakes the open consoles of an organisation; each holds a one-slot queue (coalescing)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Queue[None]]] = defaultdict(set)
        self.closing = False

    def subscribe(self, org: str) -> asyncio.Queue[None]:
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._waiters[org].add(queue)
        return queue

    def unsubscribe(self, org: str, queue: asyncio.Queue[None]) -> None:
        waiters = self._waiters.get(org)
        if waiters is not None:
            waiters.discard(queue)
            if not waiters:
                del self._waiters[org]

    def notify(self, org: str | None) -> None:
        for queue in list(self._waiters.get(org or "", ())):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def close(self, _app: web.Application | None = None) -> None:
        """On shutdown: every stream ends at its next wake-up, which is now."""
        self.closing = True
        for org in list(self._waiters):
            self.notify(org)


def _shown(visit: Visit, now: float) -> bool:
    return visit.is_live or visit.updated_at >= now - FINISHED_SHOWN_SECONDS


def seat_states(visit: Visit, events: list[VisitEvent]) -> dict[str, dict[str, Any]]:
    """Each seat's latest call status and since when, from the visit's events in log order."""
    states: dict[str, dict[str, Any]] = {}
    for event in events:
        status = _STATUS.get(event.kind)
        if status is not None and event.participant is not None:
            states[event.participant] = {"status": status, "since": event.time}
    if not visit.is_live:
        for state in states.values():
            if state["status"] in ("waiting", "admitted", "in-call", "reconnecting"):
                state["status"] = "left"
    return states


async def snapshot(store: VisitStore, events: EventLog, org: str) -> dict[str, Any]:
    """Today's and upcoming visits of `org` with each seat's live status."""
    now = time.time()
    visits = [v for v in await store.list_by_org(org) if _shown(v, now)]
    visits.sort(key=lambda v: (v.planned_start is None, v.planned_start or v.created_at))
    visits = visits[:MAX_VISITS]
    log = await events.for_visits([v.id for v in visits]) if visits else {}
    out = []
    for visit in visits:
        states = seat_states(visit, log.get(VisitId(visit.id), []))
        seats = []
        for seat in visit.seats.values():
            state = states.get(seat.participant, {"status": "invited", "since": None})
            seats.append({**seat.to_dict(), **state})
        out.append(
            {
                "id": visit.id,
                "kind": visit.kind.value,
                "state": visit.state.value,
                "planned_start": visit.planned_start,
                "planned_minutes": visit.planned_minutes,
                "waiting_room": visit.waiting_room,
                "max_participants": visit.max_participants,
                "seats": seats,
            }
        )
    return {"org": org, "visits": out}


async def stream(
    request: web.Request,
    store: VisitStore,
    events: EventLog,
    changes: ConsoleChanges,
    org: str,
    expires_at: float | None,
) -> web.StreamResponse:
    """Send a snapshot now and after every change, until the client goes, the session
    expires, or the server shuts down."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = changes.subscribe(org)
    last = ""
    quiet_since = time.monotonic()
    try:
        while not changes.closing and (expires_at is None or time.time() < expires_at):
            current = await snapshot(store, events, org)
            key = json.dumps(current, separators=(",", ":"))
            if key != last:
                last = key
                data = json.dumps({"now": time.time(), **current}, separators=(",", ":"))
                await response.write(f"event: visits\ndata: {data}\n\n".encode())
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                await response.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), POLL_SECONDS)
    except ConnectionResetError:
        pass  # the console was closed
    finally:
        changes.unsubscribe(org, queue)
    return response
