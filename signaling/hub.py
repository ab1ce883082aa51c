"""One hub per live visit on this node: who is connected, waiting, in the call or reconnecting.

A seat moves waiting -> in the call (admitted, or a host, or no waiting room) -> reconnecting
(socket lost, seat and media kept for the grace period) -> left. Everything the others must see
is broadcast from here; everything evaluators need is written to the event log from here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from media.quality import QualityMeter
from media.room import SfuRoom
from media.tasks import OwnedTasks
from rooms.errors import NotDurable
from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.policy import is_host_role
from rooms.presence import in_call_by_record
from rooms.store import StoreUnavailable
from rooms.visit import Seat, Visit, VisitState
from signaling.errors import CLOSE_FATAL, CLOSE_NODE_LOST, CLOSE_VISIT_ENDED, ProtocolError
from signaling.services import SignalingServices

if TYPE_CHECKING:
    from signaling.session import Session

logger = logging.getLogger(__name__)

CHAT_HISTORY = 100
#: Seconds a peer connection closed by the other end may wait for its client to say why.
CLOSED_PEER_SETTLE = 2.0
#: States of a visit whose call may have people in it.
CALL_STATES = frozenset({VisitState.OPEN, VisitState.IN_PROGRESS})


class VisitHub:
    """Implements media.observer.RoomObserver for its room."""

    def __init__(
        self, visit_id: VisitId, services: SignalingServices, registry: HubRegistry
    ) -> None:
        self.visit_id = visit_id
        self._services = services
        self._registry = registry
        self.sessions: dict[ParticipantId, Session] = {}
        self.in_call: set[ParticipantId] = set()
        self.admitted: set[ParticipantId] = set()
        self.reconnecting: dict[ParticipantId, asyncio.Task[None]] = {}
        self.assisting: ParticipantId | None = None
        self.chat: deque[dict[str, Any]] = deque(maxlen=CHAT_HISTORY)
        self.lock = asyncio.Lock()
        self.tasks = OwnedTasks(f"hub {visit_id}")
        self.room: SfuRoom = services.sfu.room(visit_id, self)
        self._seats: dict[ParticipantId, Seat] = {}
        self._org: str | None = None
        self._departure: asyncio.Task[None] | None = None
        self._quality_task: asyncio.Task[None] | None = None
        self._meters: dict[ParticipantId, QualityMeter] = {}
        #: The latest connection-quality level of each participant in the call.
        self.quality: dict[ParticipantId, str] = {}
        #: The visit as this node last read or wrote it (written back after a Redis restart).
        self.last_visit: Visit | None = None
        self._adoption_checked = False
        #: The visit ended or was cancelled: whoever leaves now is gone for good.
        self._over = False
        #: In the call with a socket, but their media connection died: shown reconnecting.
        self.cut_off: set[ParticipantId] = set()
        #: (participant, source) -> when their shared screen or second camera began (monotonic).
        self.sharing: dict[tuple[ParticipantId, str], float] = {}

    # --- arriving ---------------------------------------------------------------------------

    async def enter(self, session: Session, visit: Visit, seat: Seat) -> tuple[bool, bool]:
        """Seat `session`. Returns (reconnect, waiting)."""
        self._org = visit.org
        self.last_visit = visit
        for other in visit.seats.values():
            self._seats.setdefault(other.participant, other)
        if not self._adoption_checked:
            self._adoption_checked = True
            await self._adopt()
        self._seats[seat.participant] = seat
        participant = seat.participant
        previous = self.sessions.get(participant)
        self.sessions[participant] = session
        if previous is not None:
            await previous.replaced()
        grace = self.reconnecting.pop(participant, None)
        if grace is not None:
            grace.cancel()
        self._cancel_departure()
        reconnect = previous is not None or grace is not None
        host = is_host_role(visit, seat.role)
        if host or not visit.waiting_room or participant in self.admitted:
            self.admitted.add(participant)
            await self._into_call(seat, reconnect)
            return reconnect, False
        await self._record(EventKind.PARTICIPANT_WAITING, seat)
        repeat = participant in visit.declined
        self._to_hosts({"type": "waiting", "participant": session.describe(), "repeat": repeat})
        return reconnect, True

    async def _into_call(self, seat: Seat, reconnect: bool) -> None:
        participant = seat.participant
        rejoining = participant in self.in_call
        self.cut_off.discard(participant)
        self.in_call.add(participant)
        await self._presence(participant, True)
        await self.room.connect(participant)
        if self._quality_task is None:
            self._quality_task = self.tasks.spawn(self._quality_loop())
        await self._record(
            EventKind.PARTICIPANT_RECONNECTED
            if reconnect and rejoining
            else EventKind.PARTICIPANT_JOINED,
            seat,
        )
        await self._advance()
        session = self.sessions[participant]
        kind = "participant-reconnected" if rejoining else "participant-joined"
        self.broadcast({"type": kind, "participant": session.describe()}, exclude=participant)

    async def _advance(self) -> None:
        """Move the visit along as people arrive: open at the first, in progress at the second.

        Through the store's atomic update, so a cancel or an end on another request or node is
        never overwritten by a stale copy."""
        moved: list[EventKind] = []
        in_call = len(self.in_call)

        def change(visit: Visit) -> None:
            moved.clear()
            if visit.state is VisitState.SCHEDULED:
                visit.transition(VisitState.OPEN)
                moved.append(EventKind.VISIT_OPENED)
            if visit.state is VisitState.OPEN and in_call >= 2:
                visit.transition(VisitState.IN_PROGRESS)
                moved.append(EventKind.VISIT_STARTED)

        current = await self._services.store.get(self.visit_id)
        self.last_visit = current
        if current.state is VisitState.SCHEDULED or (
            current.state is VisitState.OPEN and in_call >= 2
        ):
            self.last_visit = await self._services.store.update(self.visit_id, change)
            for kind in moved:
                await self._record(kind)

    async def _adopt(self) -> None:
        """A hub new on this node whose visit has people in its call took the visit over from
        a node that was lost or drained: they come back as reconnecting seats (no waiting
        room), and those who never do leave after the grace period."""
        try:
            present = await self._services.cluster.in_call(self.visit_id)
        except StoreUnavailable:
            return
        visit = self.last_visit
        if not present and visit is not None and visit.state in CALL_STATES:
            # No live record of the call (this node restarted, or Redis came back empty).
            present = in_call_by_record(await self._services.events.for_visit(self.visit_id))
        present = {p for p in present if p in self._seats and p not in self.in_call}
        if not present:
            return
        await self._record(EventKind.VISIT_MOVED, to_node=self._services.node_id)
        for participant in sorted(present):
            self.in_call.add(participant)
            self.admitted.add(participant)
            await self._record(EventKind.PARTICIPANT_RECONNECTING, self._seats[participant])
            timer = self.tasks.spawn(self._grace_expires(participant))
            if timer is not None:
                self.reconnecting[participant] = timer

    async def _presence(self, participant: ParticipantId, in_call: bool) -> None:
        """Keep the shared presence set in step; an outage only delays it (resync)."""
        cluster = self._services.cluster
        try:
            if in_call:
                await cluster.join_call(self.visit_id, participant)
            else:
                await cluster.leave_call(self.visit_id, participant)
        except StoreUnavailable:
            logger.warning("visit %s: presence not shared (live state unavailable)", self.visit_id)

    # --- the host's decisions -----------------------------------------------------------------

    def waiting(self) -> list[ParticipantId]:
        return [p for p in self.sessions if p not in self.in_call]

    async def admit(self, participant: ParticipantId) -> None:
        session = self.sessions.get(participant)
        if session is None or participant in self.in_call:
            raise ProtocolError("not-waiting", f"{participant} is not waiting to be admitted")
        self.admitted.add(participant)
        seat = self._seats[participant]
        await self._record(EventKind.PARTICIPANT_ADMITTED, seat)
        await self._into_call(seat, reconnect=False)
        session.send({"type": "admitted", **self.call_state(participant)})
        self._to_hosts({"type": "waiting-ended", "participant": participant})

    async def admit_all(self) -> None:
        for participant in self.waiting():
            await self.admit(participant)

    async def decline(self, participant: ParticipantId) -> None:
        session = self.sessions.get(participant)
        if session is None or participant in self.in_call:
            raise ProtocolError("not-waiting", f"{participant} is not waiting to be admitted")
        # Stays declined: a new knock is refused until the pause is over.
        await self._update_visit(lambda v: v.note_declined(participant, time.time()))
        await self._record(EventKind.PARTICIPANT_DECLINED, self._seats[participant])
        session.send(
            {
                "type": "error",
                "code": "declined",
                "fatal": True,
                "message": "the host did not let you in this time",
            }
        )
        session.close_with(CLOSE_FATAL, "declined")
        self._to_hosts({"type": "waiting-ended", "participant": participant})

    async def remove(self, participant: ParticipantId) -> None:
        if participant not in self.in_call:
            raise ProtocolError("not-in-call", f"{participant} is not in the call")
        session = self.sessions.get(participant)
        # Barred in the live store first: a fresh tab, on any node, stays out.
        await self._update_visit(lambda v: v.bar(participant))
        await self._record(EventKind.PARTICIPANT_REMOVED, self._seats[participant])
        await self._depart(participant, reason="removed")
        if session is not None:
            del self.sessions[participant]
            session.send(
                {
                    "type": "error",
                    "code": "removed",
                    "fatal": True,
                    "message": "the host has removed you from the visit",
                }
            )
            session.close_with(CLOSE_FATAL, "removed")
        self._to_hosts({"type": "barred", "participant": self._seats[participant].to_dict()})
        self._maybe_departure()

    async def readmit(self, participant: ParticipantId) -> None:
        """Lift a removal: the participant may come back, straight into the call."""
        lifted: list[bool] = []

        def change(visit: Visit) -> None:
            lifted[:] = [visit.readmit(participant)]

        await self._update_visit(change)
        if not lifted[0]:
            raise ProtocolError("not-removed", f"{participant} has not been removed")
        self.admitted.add(participant)
        self._to_hosts({"type": "readmitted", "participant": participant})

    async def _update_visit(self, change: Callable[[Visit], None]) -> None:
        """A host's decision that must hold across tabs and nodes, written to the live store."""
        try:
            self.last_visit = await self._services.store.update(self.visit_id, change)
        except StoreUnavailable:
            raise ProtocolError(
                "service-unavailable", "live state cannot be reached right now: try again"
            ) from None

    def mute_request(self, participant: ParticipantId, by: ParticipantId) -> None:
        session = self.sessions.get(participant)
        if session is None or participant not in self.in_call:
            raise ProtocolError("not-in-call", f"{participant} is not in the call")
        session.send({"type": "mute-request", "by": by})

    async def fallback_to_phone(self, by: Seat) -> None:
        await self._record(EventKind.VISIT_FELL_BACK_TO_PHONE, by)
        self.broadcast({"type": "fallback-phone", "by": by.participant})

    async def end_visit(self, visit: Visit, reason: str = "host") -> None:
        """End the visit for everyone: each page is told, then its socket is closed."""
        ended = await self._services.store.update(
            self.visit_id, lambda v: v.transition(VisitState.ENDED)
        )
        visit.state = ended.state
        self.last_visit = ended
        self._over = True
        await self._record(EventKind.VISIT_ENDED, reason=reason)
        try:
            await self._services.cluster.forget_visit(self.visit_id, self._services.node_id)
        except StoreUnavailable:
            logger.warning(
                "visit %s: placement not released (live state unavailable)", self.visit_id
            )
        for session in list(self.sessions.values()):
            session.send({"type": "visit-ended"})
            session.close_with(CLOSE_VISIT_ENDED, "visit-ended")
        for timer in self.reconnecting.values():
            timer.cancel()
        self.reconnecting.clear()

    # --- in the call --------------------------------------------------------------------------

    async def set_assisting(self, visit: Visit, seat: Seat, on: bool) -> None:
        """In an assisted visit the nurse's device can be the citizen's device too."""
        if seat.role.value != "nurse" or visit.kind.value != "assisted":
            raise ProtocolError("forbidden", "only the nurse of an assisted visit assists")
        self.assisting = seat.participant if on else None
        await self._record(EventKind.CITIZEN_ASSISTED, seat, on=on)
        self.broadcast({"type": "assisting", "participant": seat.participant, "on": on})

    def post_chat(self, seat: Seat, text: str) -> None:
        """Chat is kept in memory for the visit's length only, never in any log or record."""
        message = {
            "type": "chat",
            "participant": seat.participant,
            "text": text.strip(),
            "time": time.time(),
        }
        self.chat.append(message)
        self.broadcast(message)

    async def restart_media(self, seat: Seat) -> dict[str, int]:
        await self.room.connect(seat.participant)
        await self._record(EventKind.MEDIA_RESTARTED, seat)
        session = self.sessions.get(seat.participant)
        if seat.participant in self.cut_off and session is not None:
            self.cut_off.discard(seat.participant)
            self.broadcast(
                {"type": "participant-reconnected", "participant": session.describe()},
                exclude=seat.participant,
            )
        return self._recv_slots(seat.participant)

    def connected(self) -> int:
        """Sessions here whose participant is not cut off."""
        return sum(1 for p in self.sessions if p not in self.cut_off)

    def call_state(self, participant: ParticipantId) -> dict[str, Any]:
        """What a participant entering the call needs: who is there, and how many slots."""
        return {
            "participants": [self.describe(p) for p in self.in_call if p != participant],
            "chat": list(self.chat),
            "recv": self._recv_slots(participant),
        }

    def _recv_slots(self, participant: ParticipantId) -> dict[str, int]:
        """Slots for everyone in the call, also those expected back (after a move nobody is
        connected yet): an offer made now then needs no renegotiation when they return."""
        slots = self.room.recv_slots_for(participant)
        expected = len(self.in_call - {participant})
        return {kind: max(count, expected) for kind, count in slots.items()}

    def describe(self, participant: ParticipantId) -> dict[str, Any]:
        session = self.sessions.get(participant)
        if session is not None:
            return session.describe()
        return {
            **self._seats[participant].to_dict(),
            "audio": False,
            "video": False,
            "assisting": self.assisting == participant,
            "reconnecting": True,
        }

    async def _quality_loop(self) -> None:
        """Sample each participant's connection and tell everyone when a level changes."""
        while True:
            await asyncio.sleep(self._services.quality_interval)
            for participant in list(self.in_call):
                peer = self.room.peers.get(participant)
                if peer is None:
                    continue
                meter = self._meters.get(participant)
                if meter is None or meter.peer is not peer:
                    meter = self._meters[participant] = QualityMeter(peer)
                sample = await meter.sample()
                sink = self._services.quality_sink
                seat = self._seats[participant]
                if sink is not None:
                    sink(
                        self.visit_id,
                        participant,
                        seat.role.value,
                        seat.sector.value,
                        sample.to_dict(),
                    )
                if self.quality.get(participant) != sample.level:
                    self.quality[participant] = sample.level
                    self.broadcast(
                        {"type": "quality", "participant": participant, "level": sample.level}
                    )

    # --- leaving ------------------------------------------------------------------------------

    async def leave(self, session: Session, *, explicit: bool) -> None:
        participant = session.participant
        if participant is None or self.sessions.get(participant) is not session:
            return
        del self.sessions[participant]
        seat = self._seats[participant]
        if participant not in self.in_call:
            await self._record(EventKind.PARTICIPANT_LEFT, seat, reason="left-waiting-room")
            self._to_hosts({"type": "waiting-ended", "participant": participant})
        elif self._over:
            await self._depart(participant, reason="visit-ended")
        elif explicit:
            await self._depart(participant, reason="left")
        else:
            self._meters.pop(participant, None)
            self.cut_off.discard(participant)
            await self.room.disconnect(participant)
            await self._record(EventKind.PARTICIPANT_RECONNECTING, seat, reason=session.lost)
            self.broadcast({"type": "participant-reconnecting", "participant": participant})
            timer = self.tasks.spawn(self._grace_expires(participant))
            if timer is not None:
                self.reconnecting[participant] = timer
        self._maybe_departure()
        await self._registry.changed()

    async def _grace_expires(self, participant: ParticipantId) -> None:
        await asyncio.sleep(self._services.reconnect_grace)
        if not await self._registry.current(self):
            return
        async with self.lock:
            if self.reconnecting.pop(participant, None) is None:
                return
            await self._depart(participant, reason="connection-lost")
            self._maybe_departure()
        await self._registry.changed()

    async def _depart(self, participant: ParticipantId, reason: str) -> None:
        self.in_call.discard(participant)
        # A meter holds its peer connection (and all that hangs on it) until dropped.
        self._meters.pop(participant, None)
        self.quality.pop(participant, None)
        self.cut_off.discard(participant)
        # Coming back after this needs admission again.
        self.admitted.discard(participant)
        await self._presence(participant, False)
        if self.assisting == participant:
            self.assisting = None
        await self.room.leave(participant)
        await self._record(EventKind.PARTICIPANT_LEFT, self._seats[participant], reason=reason)
        self.broadcast({"type": "participant-left", "participant": participant})

    def _maybe_departure(self) -> None:
        if self.sessions or self.reconnecting or self._departure is not None:
            return
        if self._over:
            # Nobody comes back to an ended visit: let go of it now.
            self._departure = self.tasks.spawn(self._registry.discard(self))
            return
        self._departure = self.tasks.spawn(self._departure_timeout())

    def _cancel_departure(self) -> None:
        if self._departure is not None:
            self._departure.cancel()
            self._departure = None

    async def _departure_timeout(self) -> None:
        """A visit everyone left ends after a grace period (they may yet come back)."""
        await asyncio.sleep(self._services.departure_timeout)
        if not await self._registry.current(self):
            return
        async with self.lock:
            self._departure = None
            if self.sessions or self.reconnecting:
                return
            visit = await self._services.store.get(self.visit_id)
            if visit.is_live and visit.state is not VisitState.SCHEDULED:
                await self.end_visit(visit, reason="everyone-left")
        await self._registry.discard(self)

    # --- fan-out --------------------------------------------------------------------------

    def broadcast(self, message: dict[str, Any], exclude: ParticipantId | None = None) -> None:
        """To everyone in the call (not the waiting room)."""
        for participant, session in list(self.sessions.items()):
            if participant != exclude and participant in self.in_call:
                session.send(message)

    def _to_hosts(self, message: dict[str, Any]) -> None:
        """To the hosts in the call (each session knows whether its seat hosts)."""
        for participant, session in self.sessions.items():
            if participant in self.in_call and session.is_host:
                session.send(message)

    async def _record(self, kind: EventKind, seat: Seat | None = None, **data: object) -> None:
        """Durable when it returns (database or outbox); a record neither could keep is logged
        and the call goes on: the people in it matter more than the record."""
        try:
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
        except NotDurable:
            logger.error(
                "visit %s: event %s lost (database and outbox failed)", self.visit_id, kind
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

    def video_unsupported(self, participant: str, publisher: str, codec: str) -> None:
        logger.info(
            "visit %s: %s cannot decode %s's video (%s)",
            self.visit_id,
            participant,
            publisher,
            codec,
        )
        session = self.sessions.get(ParticipantId(participant))
        if session is not None:
            session.send({"type": "video-unsupported", "participant": publisher, "codec": codec})

    def source_changed(self, participant: str, source: str, on: bool) -> None:
        """A shared screen or second camera began or ended: recorded (role, source, seconds)."""
        who = ParticipantId(participant)
        seat = self._seats.get(who)
        if on:
            self.sharing[(who, source)] = time.monotonic()
            self.tasks.spawn(self._record(EventKind.CONTENT_SHARE_STARTED, seat, source=source))
            return
        began = self.sharing.pop((who, source), None)
        seconds = round(time.monotonic() - began, 1) if began is not None else None
        self.tasks.spawn(
            self._record(EventKind.CONTENT_SHARE_STOPPED, seat, source=source, seconds=seconds)
        )

    def first_frame(self, participant: str, kind: str) -> None:
        seat = self._seats.get(ParticipantId(participant))
        self.tasks.spawn(
            self._record(EventKind.MEDIA_FIRST_FRAME, seat, media=kind, direction="up")
        )

    def first_frame_delivered(self, participant: str, kind: str) -> None:
        seat = self._seats.get(ParticipantId(participant))
        self.tasks.spawn(
            self._record(EventKind.MEDIA_FIRST_FRAME, seat, media=kind, direction="down")
        )

    def peer_state_changed(self, participant: str, state: str) -> None:
        logger.info(
            "visit %s participant %s: peer connection %s", self.visit_id, participant, state
        )
        peer = self.room.peers.get(participant)
        # Only a peer still in the room died by itself (ICE consent lost, DTLS closed): one this
        # node closes or replaces leaves the room first.
        if state in ("failed", "closed") and peer is not None and peer.pc.connectionState == state:
            self.tasks.spawn(self._media_lost(ParticipantId(participant), peer, state))

    async def _media_lost(self, participant: ParticipantId, peer: object, state: str) -> None:
        """Cut off: the others see them reconnecting until they restart their media (the page
        does on a failed connection), come back, or their socket goes too."""
        if state == "closed":
            # A client that closes its connection on purpose (leaving, reloading, restarting
            # its media) says so over its socket at once: only a peer still in place was lost.
            await asyncio.sleep(CLOSED_PEER_SETTLE)
        async with self.lock:
            if (
                self.room.peers.get(participant) is not peer
                or participant not in self.in_call
                or participant in self.cut_off
            ):
                return
            if participant in self.sessions:
                self.cut_off.add(participant)
            await self._record(
                EventKind.MEDIA_FAILED,
                self._seats.get(participant),
                state=state,
                reason=f"peer-connection-{state}",
            )
            self.broadcast(
                {"type": "participant-reconnecting", "participant": participant},
                exclude=participant,
            )

    async def close_for_cancel(self, reason: str) -> int:
        """The visit was cancelled: tell everyone connected and close their sockets."""
        async with self.lock:
            self._over = True
            sessions = list(self.sessions.values())
            for session in sessions:
                session.send({"type": "visit-ended"})
                session.close_with(CLOSE_VISIT_ENDED, reason)
        return len(sessions)

    async def shut_down(self) -> None:
        """This node stops and no other takes the visit over: everyone leaves and the visit
        ends, recorded with reason `shutdown`; each page is told, then its socket closed."""
        async with self.lock:
            waiting = self.waiting()
            for participant in sorted(self.in_call):
                await self._depart(participant, reason="shutdown")
            for participant in waiting:
                seat = self._seats[participant]
                await self._record(EventKind.PARTICIPANT_LEFT, seat, reason="shutdown")
            visit = await self._services.store.get(self.visit_id)
            if visit.is_live:
                await self.end_visit(visit, reason="shutdown")

    async def close(self, *, reconnect: bool = False) -> None:
        """Close every session: with `reconnect`, asking the pages to come back (another node
        takes the visit over); otherwise telling them the server stopped."""
        for session in list(self.sessions.values()):
            if reconnect:
                session.close_with(CLOSE_NODE_LOST, "node-lost")
            else:
                await session.close_for("server-shutdown", "the server is shutting down")
        await self.tasks.aclose()
        await self._services.sfu.close_room(self.visit_id)


class HubRegistry:
    """The hubs of the visits live on this node."""

    def __init__(self, services: SignalingServices) -> None:
        self._services = services
        self.hubs: dict[VisitId, VisitHub] = {}
        self._changed = asyncio.Condition()

    def _empty(self, expecting: bool) -> bool:
        return not any(h.sessions or (expecting and h.reconnecting) for h in self.hubs.values())

    async def changed(self) -> None:
        """Someone left: wake `wait_empty`."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_empty(self, *, expecting: bool) -> None:
        """Until no visit here has anyone connected (nor, with `expecting`, expected back)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._empty(expecting))

    async def current(self, hub: VisitHub) -> bool:
        """Whether `hub` may act: it is this node's hub of its visit, under a current lease
        (asking may drop a hub whose lease moved on while this node was paused)."""
        return await self._services.holds(hub.visit_id) and self.hubs.get(hub.visit_id) is hub

    def hub(self, visit_id: VisitId) -> VisitHub:
        hub = self.hubs.get(visit_id)
        if hub is None:
            hub = VisitHub(visit_id, self._services, self)
            self.hubs[visit_id] = hub
        return hub

    async def discard(self, hub: VisitHub) -> None:
        if self.hubs.get(hub.visit_id) is hub and not hub.sessions and not hub.reconnecting:
            del self.hubs[hub.visit_id]
            # Its quality loop and timers would keep it, and its room's peers, alive for good.
            await hub.tasks.aclose()
            await self._services.sfu.close_room(hub.visit_id)

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

    async def close(self, *, reconnect: bool = False) -> None:
        for hub in list(self.hubs.values()):
            await hub.close(reconnect=reconnect)
        self.hubs.clear()
