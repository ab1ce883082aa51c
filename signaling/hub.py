"""One hub per live visit on this node: its connected sessions, its SFU room, its fan-out."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from media.room import SfuRoom
from media.tasks import OwnedTasks
from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.visit import Seat, Visit, VisitState
from signaling.errors import CLOSE_FATAL, CLOSE_VISIT_ENDED
from signaling.services import SignalingServices

if TYPE_CHECKING:
    from signaling.session import Session

logger = logging.getLogger(__name__)


class VisitHub:
    """Implements media.observer.RoomObserver for its room."""

    def __init__(
        self, visit_id: VisitId, services: SignalingServices, registry: HubRegistry
    ) -> None:
        self.visit_id = visit_id
        self._services = services
        self._registry = registry
        self.sessions: dict[ParticipantId, Session] = {}
        self.lock = asyncio.Lock()
        self.tasks = OwnedTasks(f"hub {visit_id}")
        self.room: SfuRoom = services.sfu.room(visit_id, self)
        self._seats: dict[ParticipantId, Seat] = {}
        self._org: str | None = None

    # --- membership -------------------------------------------------------------------------

    async def enter(self, session: Session, visit: Visit, seat: Seat) -> bool:
        """Seat `session`; returns True when the seat was already connected (a reconnect)."""
        self._org = visit.org
        self._seats[seat.participant] = seat
        previous = self.sessions.get(seat.participant)
        self.sessions[seat.participant] = session
        if previous is not None:
            await previous.replaced()
        await self.room.connect(seat.participant)
        await self._record(
            EventKind.PARTICIPANT_RECONNECTED if previous else EventKind.PARTICIPANT_JOINED,
            seat,
        )
        await self._advance(visit)
        return previous is not None

    async def _advance(self, visit: Visit) -> None:
        """Move the visit along as people arrive: open at the first, in progress at the second."""
        changed = False
        if visit.state is VisitState.SCHEDULED:
            visit.transition(VisitState.OPEN)
            await self._record(EventKind.VISIT_OPENED)
            changed = True
        if visit.state is VisitState.OPEN and len(self.sessions) >= 2:
            visit.transition(VisitState.IN_PROGRESS)
            await self._record(EventKind.VISIT_STARTED)
            changed = True
        if changed:
            await self._services.store.save(visit)

    async def leave(self, session: Session) -> None:
        participant = session.participant
        if participant is None or self.sessions.get(participant) is not session:
            return
        del self.sessions[participant]
        await self.room.leave(participant)
        seat = self._seats.get(participant)
        if seat is not None:
            await self._record(EventKind.PARTICIPANT_LEFT, seat)
        self.broadcast({"type": "participant-left", "participant": participant})
        if not self.sessions:
            await self._registry.discard(self)

    async def end_visit(self, visit: Visit) -> None:
        """End the visit for everyone: each page is told, then its socket is closed."""
        visit.transition(VisitState.ENDED)
        await self._services.store.save(visit)
        await self._record(EventKind.VISIT_ENDED)
        for session in list(self.sessions.values()):
            session.send({"type": "visit-ended"})
            session.close_with(CLOSE_VISIT_ENDED, "visit-ended")

    def participants(self) -> list[dict[str, Any]]:
        return [session.describe() for session in self.sessions.values()]

    def broadcast(self, message: dict[str, Any], exclude: ParticipantId | None = None) -> None:
        for participant, session in list(self.sessions.items()):
            if participant != exclude:
                session.send(message)

    async def _record(self, kind: EventKind, seat: Seat | None = None, **data: object) -> None:
        await self._services.events.append(
            VisitEvent(
                visit=self.visit_id,
                kind=kind,
                participant=seat.participant if seat else None,
                role=seat.role.value if seat else None,
                sector=seat.sector.value if seat else None,
                org=self._org,
                data=dict(data),
            )
        )

    # --- RoomObserver -----------------------------------------------------------------------

    def tracks_changed(self, participant: str) -> None:
        session = self.sessions.get(ParticipantId(participant))
        peer = self.room.peers.get(participant)
        if session is not None and peer is not None:
            session.send({"type": "tracks", "tracks": peer.track_map()})

    def renegotiation_needed(self, participant: str, recv: dict[str, int]) -> None:
        session = self.sessions.get(ParticipantId(participant))
        if session is not None:
            session.send({"type": "renegotiate", "recv": recv})

    def first_frame(self, participant: str, kind: str) -> None:
        seat = self._seats.get(ParticipantId(participant))
        self.tasks.spawn(
            self._record(EventKind.MEDIA_FIRST_FRAME, seat, media=kind, direction="up")
        )

    def peer_state_changed(self, participant: str, state: str) -> None:
        logger.info(
            "visit %s participant %s: peer connection %s", self.visit_id, participant, state
        )
        if state == "failed":
            seat = self._seats.get(ParticipantId(participant))
            self.tasks.spawn(self._record(EventKind.MEDIA_FAILED, seat, state=state))

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await session.close_for("server-shutdown", "the server is shutting down")
        await self._services.sfu.close_room(self.visit_id)
        await self.tasks.aclose()


class HubRegistry:
    """The hubs of the visits live on this node."""

    def __init__(self, services: SignalingServices) -> None:
        self._services = services
        self.hubs: dict[VisitId, VisitHub] = {}

    def hub(self, visit_id: VisitId) -> VisitHub:
        hub = self.hubs.get(visit_id)
        if hub is None:
            hub = VisitHub(visit_id, self._services, self)
            self.hubs[visit_id] = hub
        return hub

    async def discard(self, hub: VisitHub) -> None:
        if self.hubs.get(hub.visit_id) is hub and not hub.sessions:
            del self.hubs[hub.visit_id]
            await self._services.sfu.close_room(hub.visit_id)
            await hub.tasks.aclose()

    async def end_visit(self, visit: Visit) -> None:
        hub = self.hub(visit.id)
        async with hub.lock:
            await hub.end_visit(visit)
        if not hub.sessions:
            await self.discard(hub)

    def close_token(self, token_id: str) -> int:
        """Disconnect every session that joined with a revoked token; returns how many."""
        closed = 0
        for hub in self.hubs.values():
            for session in list(hub.sessions.values()):
                if session.principal is not None and session.principal.token_id == token_id:
                    session.send(
                        {
                            "type": "error",
                            "code": "token-revoked",
                            "fatal": True,
                            "message": "access with this link has been revoked",
                        }
                    )
                    session.close_with(CLOSE_FATAL, "token-revoked")
                    closed += 1
        return closed

    async def close(self) -> None:
        for hub in list(self.hubs.values()):
            await hub.close()
        self.hubs.clear()
