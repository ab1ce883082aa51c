"""One hub per live visit on this node: the transport and fan-out of its call.

The call itself (seats, admission, waiting room, grace period, host decisions, who may send
what) is `rooms.call.Call`. The hub hands it what happens (a socket joins, leaves, a host
decides, media dies), writes what must hold across nodes to the live store under this node's
lease epoch, and turns each `CallEvent` into media actions, socket messages, an event-log row
and a call to each `CallSubscriber`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from media.room import SfuRoom
from media.tasks import OwnedTasks
from rooms.call import (
    Call,
    CallEvent,
    CallRefused,
    ConnectionId,
    ConnectionReplaced,
    ParticipantDeclined,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantReconnecting,
    ParticipantRemoved,
    VisitOpened,
    VisitStarted,
)
from rooms.call_journal import visit_event
from rooms.errors import NotDurable
from rooms.eventlog import EventKind
from rooms.ids import ParticipantId, VisitId
from rooms.presence import in_call_by_record
from rooms.store import StaleLease, StoreUnavailable
from rooms.visit import Seat, Visit, VisitState
from signaling import down
from signaling.call_media import CallMedia
from signaling.errors import (
    CLOSE_FATAL,
    CLOSE_NODE_LOST,
    CLOSE_VISIT_ENDED,
    FatalError,
    ProtocolError,
)
from signaling.fanout import notices
from signaling.messages import error_message
from signaling.services import SignalingServices

if TYPE_CHECKING:
    from signaling.registry import HubRegistry
    from signaling.session import Session

logger = logging.getLogger(__name__)

CHAT_HISTORY = 100
#: Seconds a peer connection closed by the other end may wait for its client to say why.
CLOSED_PEER_SETTLE = 2.0
#: States of a visit whose call may have people in it.
CALL_STATES = frozenset({VisitState.OPEN, VisitState.IN_PROGRESS})


def refused(exc: CallRefused) -> ProtocolError:
    return ProtocolError(exc.code, exc.message)


class VisitHub:
    """Implements media.observer.RoomObserver for its room."""

    def __init__(
        self, visit_id: VisitId, services: SignalingServices, registry: HubRegistry
    ) -> None:
        self.visit_id = visit_id
        self._services = services
        self._registry = registry
        self.call = Call(visit_id, grace=services.reconnect_grace, clock=time.monotonic)
        self._connections: dict[ConnectionId, Session] = {}
        self.chat: deque[dict[str, Any]] = deque(maxlen=CHAT_HISTORY)
        self.lock = asyncio.Lock()
        self.tasks = OwnedTasks(f"hub {visit_id}")
        self.room: SfuRoom = services.sfu.room(visit_id, self)
        self._org: str | None = None
        self._departure: asyncio.Task[None] | None = None
        self._grace_timer: asyncio.Task[None] | None = None
        self._grace_deadline: float | None = None
        self._sampling = False
        self.media = CallMedia(
            visit_id, self.call, self.room, services, self.broadcast, self._media_silent
        )
        #: The visit as this node last read or wrote it (written back after a Redis restart).
        self.last_visit: Visit | None = None
        self._adoption_checked = False
        #: Unix time the call began: the first participant-joined row, as the evaluation
        #: counts it. The host's visit timer counts from it, on any device, after any reload.
        self.started_at: float | None = None
        #: Sessions of seats just removed, told and closed once the others know.
        self._removed: list[Session] = []
        #: The epoch of the lease this hub last acted under (kept once its node drops it).
        self._epoch: int | None = None
        #: A fenced write was refused: the visit's lease moved on, this hub writes no more.
        self.stale = False

    @property
    def sessions(self) -> dict[ParticipantId, Session]:
        """The connected session of each seat."""
        return {p: self._connections[c] for p, c in self.call.connections.items()}

    @property
    def quality(self) -> dict[ParticipantId, str]:
        return self.media.quality

    @property
    def in_call(self) -> set[ParticipantId]:
        return self.call.in_call

    @property
    def reconnecting(self) -> dict[ParticipantId, float]:
        return self.call.reconnecting

    @property
    def assisting(self) -> ParticipantId | None:
        return self.call.assisting

    def _seat(self, participant: ParticipantId) -> Seat:
        return self.call.seats[participant]

    # --- arriving ---------------------------------------------------------------------------

    async def enter(self, session: Session, visit: Visit, seat: Seat) -> tuple[bool, bool]:
        """Seat `session`. Returns (reconnect, waiting)."""
        self._org = visit.org
        self.last_visit = visit
        self.call.sync(visit)
        if not self._adoption_checked:
            self._adoption_checked = True
            if visit.state in CALL_STATES:
                self.started_at = await self._first_joined()
            await self._adopt()
        connection = ConnectionId(id(session))
        try:
            entry = self.call.enter(seat.participant, connection)
        except CallRefused as exc:
            raise FatalError(exc.code, exc.message) from None
        self._connections[connection] = session
        self._cancel_departure()
        await self._apply(entry.events)
        return entry.reconnect, entry.waiting

    async def _advance(self) -> None:
        """Move the visit along as people arrive: open at the first, in progress at the second.

        Through the store's atomic update, so a cancel or an end on another request or node is
        never overwritten by a stale copy."""
        moved: list[CallEvent] = []
        in_call = len(self.call.in_call)

        def change(visit: Visit) -> None:
            moved.clear()
            if visit.state is VisitState.SCHEDULED:
                visit.transition(VisitState.OPEN)
                moved.append(VisitOpened())
            if visit.state is VisitState.OPEN and in_call >= 2:
                visit.transition(VisitState.IN_PROGRESS)
                moved.append(VisitStarted())

        current = await self._services.store.get(self.visit_id)
        self.last_visit = current
        if current.state is VisitState.SCHEDULED or (
            current.state is VisitState.OPEN and in_call >= 2
        ):
            await self._write(change)
            await self._apply(moved)

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
        await self._apply(self.call.adopt(present, self._services.node_id))

    async def _first_joined(self) -> float | None:
        """When the call began, from the record (this hub is new; the call may be older)."""
        events = await self._services.events.for_visit(self.visit_id)
        joined = [e.time for e in events if e.kind is EventKind.PARTICIPANT_JOINED]
        return min(joined, default=None)

    async def _presence(self, participant: ParticipantId, in_call: bool) -> None:
        """Keep the shared presence set in step, fenced by the lease epoch; an outage only
        delays it (resync)."""
        if self.stale:
            return
        cluster, epoch = self._services.cluster, self._lease_epoch()
        try:
            if in_call:
                await cluster.join_call(self.visit_id, participant, epoch=epoch)
            else:
                await cluster.leave_call(self.visit_id, participant, epoch=epoch)
        except StoreUnavailable:
            logger.warning("visit %s: presence not shared (live state unavailable)", self.visit_id)
        except StaleLease:
            self._lost("presence")

    def _lease_epoch(self) -> int | None:
        """The epoch of the lease this hub acts under: its node's, while it is the node's hub
        of the visit; once dropped, the last one it had, so that its writes stay refused."""
        if self._registry.hubs.get(self.visit_id) is self:
            current = self._services.epoch(self.visit_id)
            if current is not None:
                self._epoch = current
        return self._epoch

    async def _may_record(self) -> bool:
        """Whether this hub may still write the visit's record: no later lease of it was
        granted (asked of the shared state; an outage lets the record through, as nobody can
        take the lease meanwhile)."""
        epoch = self._lease_epoch()
        if self.stale or epoch is None:
            return not self.stale
        try:
            await self._services.cluster.check_epoch(self.visit_id, epoch)
        except StoreUnavailable:
            return True
        except StaleLease:
            self._lost("event log")
            return False
        return True

    def _lost(self, what: str) -> None:
        """A fenced write was refused: another node holds the visit now. This hub writes
        nothing more, and its node stops serving the visit (its sockets are sent on)."""
        if self.stale:
            return
        self.stale = True
        logger.warning(
            "visit %s: %s write refused (the lease moved on); dropping the visit",
            self.visit_id,
            what,
        )
        if self._registry.hubs.get(self.visit_id) is self:
            self._services.lost(self.visit_id)

    # --- the host's decisions -----------------------------------------------------------------

    def waiting(self) -> list[ParticipantId]:
        return self.call.waiting()

    async def _act(self, decide: Callable[[], list[CallEvent]]) -> None:
        try:
            events = decide()
        except CallRefused as exc:
            raise refused(exc) from None
        await self._apply(events)

    async def admit(self, participant: ParticipantId) -> None:
        await self._act(lambda: self.call.admit(participant))
        self.sessions[participant].send(down.Admitted(**self.call_state(participant)).wire())
        self._to_hosts(down.WaitingEnded(participant=participant).wire())

    async def admit_all(self) -> None:
        for participant in self.waiting():
            await self.admit(participant)

    async def decline(self, participant: ParticipantId) -> None:
        try:
            self.call.check_waiting(participant)
        except CallRefused as exc:
            raise refused(exc) from None
        # Stays declined: a new knock is refused until the pause is over.
        await self._update_visit(lambda v: v.note_declined(participant, time.time()))
        await self._act(lambda: self.call.decline(participant))

    async def remove(self, participant: ParticipantId) -> None:
        if participant not in self.call.in_call:
            raise ProtocolError("not-in-call", f"{participant} is not in the call")
        # Barred in the live store first: a fresh tab, on any node, stays out.
        await self._update_visit(lambda v: v.bar(participant))
        await self._act(lambda: self.call.remove(participant))
        for session in self._removed:
            session.send(
                error_message(
                    "removed", "the host has removed you from the visit", fatal=True
                ).wire()
            )
            session.close_with(CLOSE_FATAL, "removed")
        self._removed.clear()
        self._to_hosts(down.Barred(participant=self._seat(participant).to_dict()).wire())
        self._maybe_departure()

    async def readmit(self, participant: ParticipantId) -> None:
        """Lift a removal: the participant may come back, straight into the call."""
        lifted: list[bool] = []

        def change(visit: Visit) -> None:
            lifted[:] = [visit.readmit(participant)]

        await self._update_visit(change)
        if not lifted[0]:
            raise ProtocolError("not-removed", f"{participant} has not been removed")
        await self._act(lambda: self.call.readmit(participant))

    async def _update_visit(self, change: Callable[[Visit], None]) -> None:
        """A host's decision that must hold across tabs and nodes, written to the live store."""
        try:
            await self._write(change)
        except StoreUnavailable:
            raise ProtocolError(
                "service-unavailable", "live state cannot be reached right now: try again"
            ) from None

    def check_fence(self, visit: Visit) -> None:
        """Before any decision: refused once the visit was written under a later lease."""
        epoch = self._lease_epoch()
        if epoch is not None and visit.fence > epoch:
            raise StaleLease(f"visit {self.visit_id} is written under epoch {visit.fence} now")

    async def _write(self, change: Callable[[Visit], None]) -> Visit:
        """Every write of this visit's live state, fenced by this node's lease epoch: a node
        whose lease was taken over (it was paused) cannot write any more (StaleLease)."""
        self.last_visit = await self._services.store.update(
            self.visit_id, change, epoch=self._lease_epoch()
        )
        return self.last_visit

    def mute_request(self, participant: ParticipantId, by: ParticipantId) -> None:
        try:
            self.call.check_in_call(participant)
        except CallRefused as exc:
            raise refused(exc) from None
        self.sessions[participant].send(down.MuteAsked(by=by).wire())

    async def fallback_to_phone(self, by: Seat) -> None:
        await self._act(lambda: self.call.fall_back_to_phone(by.participant))

    async def end_visit(self, visit: Visit, reason: str = "host") -> None:
        """End the visit for everyone: each page is told, then its socket is closed."""
        ended = await self._write(lambda v: v.transition(VisitState.ENDED))
        visit.state = ended.state
        await self._apply(self.call.end(reason))
        try:
            await self._services.cluster.forget_visit(self.visit_id, self._services.node_id)
        except StoreUnavailable:
            logger.warning(
                "visit %s: placement not released (live state unavailable)", self.visit_id
            )
        for session in list(self.sessions.values()):
            session.send(down.VisitEnded().wire())
            session.close_with(CLOSE_VISIT_ENDED, "visit-ended")
        self._arm_grace()

    # --- in the call --------------------------------------------------------------------------

    async def set_assisting(self, visit: Visit, seat: Seat, on: bool) -> None:
        """In an assisted visit the nurse's device can be the citizen's device too."""
        await self._act(lambda: self.call.set_assisting(seat.participant, on))

    def post_chat(self, seat: Seat, text: str) -> None:
        """Chat is kept in memory for the visit's length only, never in any log or record."""
        message = down.ChatPosted(
            participant=seat.participant, text=text.strip(), time=time.time()
        ).wire()
        self.chat.append(message)
        self.broadcast(message)

    async def restart_media(self, seat: Seat) -> dict[str, int]:
        await self.room.connect(seat.participant)
        await self._apply(self.call.media_restarted(seat.participant))
        return self._recv_slots(seat.participant)

    def connected(self) -> int:
        """Sessions here whose participant is not cut off."""
        return self.call.connected()

    def call_state(self, participant: ParticipantId) -> dict[str, Any]:
        """What a participant entering the call needs: who is there, and how many slots."""
        return {
            "participants": [self.describe(p) for p in self.call.in_call if p != participant],
            "chat": list(self.chat),
            "recv": self._recv_slots(participant),
        }

    def _recv_slots(self, participant: ParticipantId) -> dict[str, int]:
        """Slots for everyone in the call, also those expected back (after a move nobody is
        connected yet): an offer made now then needs no renegotiation when they return."""
        slots = self.room.recv_slots_for(participant)
        expected = len(self.call.in_call - {participant})
        return {kind: max(count, expected) for kind, count in slots.items()}

    def describe(self, participant: ParticipantId) -> dict[str, Any]:
        session = self.sessions.get(participant)
        if session is not None:
            return session.describe()
        return {
            **self._seat(participant).to_dict(),
            "audio": False,
            "video": False,
            "assisting": self.call.assisting == participant,
            "reconnecting": True,
        }

    # --- leaving ------------------------------------------------------------------------------

    async def leave(self, session: Session, *, explicit: bool) -> None:
        participant = session.participant
        connection = ConnectionId(id(session))
        if participant is None or self._connections.get(connection) is not session:
            return
        del self._connections[connection]
        await self._apply(
            self.call.leave(participant, connection, explicit=explicit, reason=session.lost)
        )
        self._maybe_departure()
        await self._registry.changed()

    def _arm_grace(self) -> None:
        """One timer, for the earliest grace deadline of the call."""
        deadline = self.call.next_deadline()
        if deadline == self._grace_deadline and self._grace_timer is not None:
            return
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self._grace_deadline = deadline
        if deadline is not None:
            self._grace_timer = self.tasks.spawn(self._grace_expires(deadline))

    async def _grace_expires(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        if not await self._registry.current(self):
            return
        async with self.lock:
            self._grace_timer = None
            await self._apply(self.call.expire())
            self._arm_grace()
            self._maybe_departure()
        await self._registry.changed()

    def _maybe_departure(self) -> None:
        if not self.call.is_empty() or self._departure is not None:
            return
        if self.call.over:
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
            if not self.call.is_empty():
                return
            visit = await self._services.store.get(self.visit_id)
            if visit.is_live and visit.state is not VisitState.SCHEDULED:
                try:
                    await self.end_visit(visit, reason="everyone-left")
                except StaleLease:
                    logger.warning("visit %s: not ended here, its lease moved on", self.visit_id)
                    return
        await self._registry.discard(self)

    # --- events -------------------------------------------------------------------------------

    async def _apply(self, events: list[CallEvent]) -> None:
        """Carry out each event of the call, in order: media and presence first, then the
        record, then the messages the others see."""
        for event in events:
            await self._effect(event)

    async def _effect(self, event: CallEvent) -> None:
        match event:
            case ConnectionReplaced(connection=connection):
                previous = self._connections.pop(connection, None)
                if previous is not None:
                    await previous.replaced()
            case ParticipantJoined(member=member):
                await self._presence(member.participant, True)
                await self.room.connect(member.participant)
                self._start_loops()
            case ParticipantReconnecting(member=member):
                self.media.disconnected(member.participant)
                await self.room.disconnect(member.participant)
            case ParticipantLeft(member=member, waiting=False):
                self.media.left(member.participant)
                await self._presence(member.participant, False)
                await self.room.leave(member.participant)
        self._arm_grace()
        await self._record(event)
        match event:
            case ParticipantJoined():
                await self._advance()
            case ParticipantDeclined(connection=declined) if declined in self._connections:
                session = self._connections[declined]
                session.send(
                    error_message(
                        "declined", "the host did not let you in this time", fatal=True
                    ).wire()
                )
                session.close_with(CLOSE_FATAL, "declined")
            case ParticipantRemoved(connection=removed) if removed is not None:
                self._removed.append(self._connections.pop(removed))
        for notice in notices(event, self.describe):
            if notice.hosts_only:
                self._to_hosts(notice.message)
            else:
                self.broadcast(notice.message, exclude=notice.exclude)

    def _start_loops(self) -> None:
        if not self._sampling:
            self._sampling = True
            self.tasks.spawn(self.media.sample_quality())
            self.tasks.spawn(self.media.watch_media())

    # --- fan-out --------------------------------------------------------------------------

    def broadcast(self, message: dict[str, Any], exclude: ParticipantId | None = None) -> None:
        """To everyone in the call (not the waiting room)."""
        for participant, session in list(self.sessions.items()):
            if participant != exclude and participant in self.call.in_call:
                session.send(message)

    def _to_hosts(self, message: dict[str, Any]) -> None:
        """To the hosts in the call (each session knows whether its seat hosts)."""
        for participant, session in self.sessions.items():
            if participant in self.call.in_call and session.is_host:
                session.send(message)

    async def _record(self, event: CallEvent) -> None:
        """Durable when it returns (database or outbox), then handed to each subscriber. A
        record neither could keep is logged and the call goes on: the people in it matter more
        than the record. Fenced: a hub whose lease moved on records nothing."""
        if not await self._may_record():
            return
        row = visit_event(self.visit_id, self._org, event)
        if row is not None and row.kind is EventKind.PARTICIPANT_JOINED and self.started_at is None:
            self.started_at = row.time
        if row is not None:
            try:
                await self._services.events.append(row)
            except NotDurable:
                logger.error(
                    "visit %s: event %s lost (database and outbox failed)", self.visit_id, row.kind
                )
        for subscriber in self._services.call_subscribers:
            try:
                subscriber.call_event(self.visit_id, self._org, event)
            except Exception:
                logger.exception("visit %s: a call-event subscriber failed", self.visit_id)

    # --- RoomObserver -----------------------------------------------------------------------

    def tracks_changed(self, participant: str) -> None:
        session = self.sessions.get(ParticipantId(participant))
        peer = self.room.peers.get(participant)
        if session is not None and peer is not None:
            session.send(down.Tracks(tracks=peer.track_map()).wire())

    def renegotiation_needed(self, participant: str, recv: dict[str, int]) -> None:
        session = self.sessions.get(ParticipantId(participant))
        if session is not None:
            session.send(down.Renegotiate(recv=recv).wire())

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
            session.send(down.VideoUnsupported(participant=publisher, codec=codec).wire())

    def source_changed(self, participant: str, source: str, on: bool) -> None:
        """A shared screen or second camera began or ended: recorded (role, source, seconds)."""
        self.tasks.spawn(
            self._record(self.call.content_share(ParticipantId(participant), source, on))
        )

    def first_frame(self, participant: str, kind: str) -> None:
        self.tasks.spawn(
            self._record(self.call.first_frame(ParticipantId(participant), kind, "up"))
        )

    def first_frame_delivered(self, participant: str, kind: str) -> None:
        event = self.call.first_frame(ParticipantId(participant), kind, "down")
        self.tasks.spawn(self._record(event))

    def peer_state_changed(self, participant: str, state: str) -> None:
        logger.info(
            "visit %s participant %s: peer connection %s", self.visit_id, participant, state
        )
        peer = self.room.peers.get(participant)
        # Only a peer still in the room died by itself (ICE consent lost, DTLS closed): one this
        # node closes or replaces leaves the room first.
        if state in ("failed", "closed") and peer is not None and peer.pc.connectionState == state:
            self.tasks.spawn(self._media_lost(ParticipantId(participant), peer, state))

    async def _media_lost(
        self, participant: ParticipantId, peer: object, state: str, reason: str | None = None
    ) -> None:
        """Cut off: the others see them reconnecting until they restart their media (the page
        does on a failed connection), come back, or their socket goes too."""
        if state == "closed":
            # A client that closes its connection on purpose (leaving, reloading, restarting
            # its media) says so over its socket at once: only a peer still in place was lost.
            await asyncio.sleep(CLOSED_PEER_SETTLE)
        async with self.lock:
            if self.room.peers.get(participant) is not peer:
                return
            why = reason or f"peer-connection-{state}"
            await self._apply(self.call.media_failed(participant, state, why))

    async def _media_silent(self, participant: ParticipantId, peer: object) -> None:
        await self._media_lost(participant, peer, "connected", reason="no-media-received")

    async def close_for_cancel(self, reason: str) -> int:
        """The visit was cancelled: tell everyone connected and close their sockets."""
        async with self.lock:
            await self._apply(self.call.cancel())
            sessions = list(self.sessions.values())
            for session in sessions:
                session.send(down.VisitEnded(reason="cancelled").wire())
                session.close_with(CLOSE_VISIT_ENDED, reason)
        return len(sessions)

    async def shut_down(self) -> None:
        """This node stops and no other takes the visit over: everyone leaves and the visit
        ends, recorded with reason `shutdown`; each page is told, then its socket closed."""
        async with self.lock:
            await self._apply(self.call.shut_down())
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
