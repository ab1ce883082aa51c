"""The call of one live visit, as a domain object: seats, admission, the waiting room, the
reconnect grace, the host's decisions, and who may send which message.

Plain method calls in, typed events (`CallEvent`) out; time comes from an injected clock. No
sockets, no tasks, no store: the transport (signaling.hub) calls it, persists what must hold
across nodes, and turns each event into socket messages, event-log rows and hooks.

A seat moves waiting -> in the call (admitted, a host, or no waiting room) -> reconnecting (its
connection lost; seat and admission kept until the grace deadline) -> left. A removed seat is
barred until readmitted; an ended call takes nobody in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NewType, Protocol

from rooms.errors import RoomsError
from rooms.ids import ParticipantId, VisitId
from rooms.policy import Action, hosts
from rooms.roles import Role
from rooms.visit import Seat, Visit, VisitKind

#: One connection (socket) of a seat, numbered by the transport: a seat has at most one.
ConnectionId = NewType("ConnectionId", int)

#: Host-only messages, by type on the wire, and the policy action each is authorized against.
#: The one table: signaling.messages and signaling.session read it, nothing repeats it.
HOST_MESSAGES: Mapping[str, Action] = MappingProxyType(
    {
        "end": Action.END_VISIT,
        "admit": Action.ADMIT,
        "admit-all": Action.ADMIT,
        "decline": Action.ADMIT,
        "remove": Action.MODERATE,
        "readmit": Action.ADMIT,
        "mute-request": Action.MODERATE,
        "fallback-phone": Action.RECORD_OUTCOME,
        "outcome": Action.RECORD_OUTCOME,
    }
)
#: Messages any connected seat may send, waiting or in the call. Every other message needs a
#: seat in the call.
OPEN_MESSAGES = frozenset({"join", "leave", "ping"})


class CallRefused(RoomsError):
    """The call cannot do that now; `code` says why (the transport reports it, the call goes on)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Member:
    """Who an event is about: pseudonymous id, role and sector, never a name."""

    participant: ParticipantId
    role: str
    sector: str

    @classmethod
    def of(cls, seat: Seat) -> Member:
        return cls(seat.participant, seat.role.value, seat.sector.value)


@dataclass(frozen=True)
class ConnectionReplaced:
    """The seat opened in another tab or window: the old connection must go."""

    member: Member
    connection: ConnectionId


@dataclass(frozen=True)
class ParticipantWaiting:
    member: Member
    #: Declined before in this visit (knocking again).
    repeat: bool


@dataclass(frozen=True)
class ParticipantAdmitted:
    member: Member


@dataclass(frozen=True)
class ParticipantJoined:
    member: Member
    #: Was in the call already (coming back from reconnecting or a cut-off).
    rejoining: bool
    #: Came back on a new connection (a grace period or an old connection ended).
    reconnect: bool


@dataclass(frozen=True)
class ParticipantDeclined:
    member: Member
    connection: ConnectionId | None


@dataclass(frozen=True)
class ParticipantRemoved:
    member: Member
    #: The connection to close, if the seat had one.
    connection: ConnectionId | None


@dataclass(frozen=True)
class ParticipantReadmitted:
    participant: ParticipantId


@dataclass(frozen=True)
class ParticipantReconnecting:
    member: Member
    reason: str
    #: Clock time at which the seat is given up unless it comes back.
    until: float


@dataclass(frozen=True)
class ParticipantLeft:
    member: Member
    reason: str
    #: Left from the waiting room (never in the call).
    waiting: bool = False


@dataclass(frozen=True)
class MediaFailed:
    member: Member
    state: str
    reason: str


@dataclass(frozen=True)
class MediaRestarted:
    member: Member
    #: It had been cut off, and is shown back in the call.
    restored: bool


@dataclass(frozen=True)
class AssistingChanged:
    member: Member
    on: bool


@dataclass(frozen=True)
class FellBackToPhone:
    member: Member


@dataclass(frozen=True)
class FirstFrame:
    member: Member | None
    media: str
    direction: str


@dataclass(frozen=True)
class ContentShared:
    """A shared screen or second camera began (`seconds` None) or ended after `seconds`."""

    member: Member | None
    source: str
    seconds: float | None = None
    started: bool = True


@dataclass(frozen=True)
class VisitOpened:
    pass


@dataclass(frozen=True)
class VisitStarted:
    pass


@dataclass(frozen=True)
class VisitMoved:
    to_node: str


@dataclass(frozen=True)
class VisitEnded:
    reason: str


CallEvent = (
    ConnectionReplaced
    | ParticipantWaiting
    | ParticipantAdmitted
    | ParticipantJoined
    | ParticipantDeclined
    | ParticipantRemoved
    | ParticipantReadmitted
    | ParticipantReconnecting
    | ParticipantLeft
    | MediaFailed
    | MediaRestarted
    | AssistingChanged
    | FellBackToPhone
    | FirstFrame
    | ContentShared
    | VisitOpened
    | VisitStarted
    | VisitMoved
    | VisitEnded
)


class CallSubscriber(Protocol):
    """Sees every event of every call on this node, in order, after the event log has it.

    Called on the event loop: it must be cheap and never block (put the event on a queue of
    its own and return). An exception is logged and the others still get the event."""

    def call_event(self, visit: VisitId, org: str | None, event: CallEvent) -> None: ...


@dataclass(frozen=True)
class Entry:
    """What `enter` decided, and the events that follow."""

    reconnect: bool
    waiting: bool
    events: list[CallEvent]


class Call:
    def __init__(self, visit_id: VisitId, *, grace: float, clock: Callable[[], float]) -> None:
        self.visit_id = visit_id
        self._grace = grace
        self._clock = clock
        #: (participant, source) -> when their shared screen or second camera began (clock).
        self.sharing: dict[tuple[ParticipantId, str], float] = {}
        self.seats: dict[ParticipantId, Seat] = {}
        self.kind = VisitKind.CONSULTATION
        self.waiting_room = True
        #: The connection each seat is connected on now.
        self.connections: dict[ParticipantId, ConnectionId] = {}
        self.in_call: set[ParticipantId] = set()
        #: Let in this time: comes back (a new connection) straight into the call.
        self.admitted: set[ParticipantId] = set()
        #: In the call without a connection, until the deadline (clock time).
        self.reconnecting: dict[ParticipantId, float] = {}
        #: In the call with a connection, but their media died: shown reconnecting.
        self.cut_off: set[ParticipantId] = set()
        #: Removed by a host: out until readmitted.
        self.barred: set[ParticipantId] = set()
        self.declined: set[ParticipantId] = set()
        self.assisting: ParticipantId | None = None
        #: Ended or cancelled: whoever leaves now is gone for good, nobody comes in.
        self.over = False

    # --- what the call knows ------------------------------------------------------------------

    def sync(self, visit: Visit) -> None:
        """Learn the booking: seats, kind, waiting room, who is barred or was declined."""
        for seat in visit.seats.values():
            self.seats.setdefault(seat.participant, seat)
        self.kind = visit.kind
        self.waiting_room = visit.waiting_room
        self.barred = set(visit.removed)
        self.declined = set(visit.declined)

    def is_host(self, participant: ParticipantId) -> bool:
        seat = self.seats.get(participant)
        return seat is not None and hosts(self.kind, seat.role)

    def member(self, participant: ParticipantId) -> Member:
        return Member.of(self.seats[participant])

    def waiting(self) -> list[ParticipantId]:
        return [p for p in self.connections if p not in self.in_call]

    def connected(self) -> int:
        """Connected seats not cut off."""
        return sum(1 for p in self.connections if p not in self.cut_off)

    def is_empty(self) -> bool:
        """Nobody connected, nobody expected back."""
        return not self.connections and not self.reconnecting

    def next_deadline(self) -> float | None:
        return min(self.reconnecting.values(), default=None)

    def check_message(self, participant: ParticipantId, kind: str) -> Action | None:
        """May `participant` send a message of `kind`? Raises CallRefused if not; returns the
        policy action a host-only message must still be authorized against (audited)."""
        if kind in OPEN_MESSAGES:
            return None
        if self.over:
            raise CallRefused("visit-ended", "this visit has ended")
        action = HOST_MESSAGES.get(kind)
        if action is not None:
            return action
        if participant not in self.in_call:
            raise CallRefused("not-admitted", "wait until the host lets you in")
        return None

    # --- arriving -----------------------------------------------------------------------------

    def enter(self, participant: ParticipantId, connection: ConnectionId) -> Entry:
        """Seat `participant` on `connection`: into the call, or into the waiting room."""
        self._open()
        if participant not in self.seats:
            raise CallRefused("seat-not-found", "no such seat in this visit")
        if participant in self.barred:
            raise CallRefused("barred", "the host has removed you from this visit")
        events: list[CallEvent] = []
        previous = self.connections.get(participant)
        self.connections[participant] = connection
        if previous is not None:
            events.append(ConnectionReplaced(self.member(participant), previous))
        grace = self.reconnecting.pop(participant, None)
        reconnect = previous is not None or grace is not None
        if (
            self.is_host(participant)
            or not self.waiting_room
            or participant in self.admitted
            or participant in self.in_call
        ):
            self.admitted.add(participant)
            events += self._into_call(participant, reconnect)
            return Entry(reconnect, False, events)
        events.append(ParticipantWaiting(self.member(participant), participant in self.declined))
        return Entry(reconnect, True, events)

    def _into_call(self, participant: ParticipantId, reconnect: bool) -> list[CallEvent]:
        rejoining = participant in self.in_call
        self.cut_off.discard(participant)
        self.in_call.add(participant)
        return [ParticipantJoined(self.member(participant), rejoining, reconnect and rejoining)]

    def adopt(self, present: Iterable[ParticipantId], to_node: str) -> list[CallEvent]:
        """This node took the visit over with `present` in its call: they are reconnecting
        (no waiting room when they come back), until the grace deadline."""
        fresh = sorted(p for p in present if p in self.seats and p not in self.in_call)
        if not fresh:
            return []
        events: list[CallEvent] = [VisitMoved(to_node)]
        until = self._clock() + self._grace
        for participant in fresh:
            self.in_call.add(participant)
            self.admitted.add(participant)
            self.reconnecting[participant] = until
            events.append(ParticipantReconnecting(self.member(participant), "moved", until))
        return events

    # --- the host's decisions -----------------------------------------------------------------

    def check_waiting(self, participant: ParticipantId) -> None:
        self._open()
        if participant not in self.connections or participant in self.in_call:
            raise CallRefused("not-waiting", f"{participant} is not waiting to be admitted")

    def admit(self, participant: ParticipantId) -> list[CallEvent]:
        self.check_waiting(participant)
        self.admitted.add(participant)
        return [ParticipantAdmitted(self.member(participant)), *self._into_call(participant, False)]

    def decline(self, participant: ParticipantId) -> list[CallEvent]:
        """Stays connected until its connection closes (it is told, then closed)."""
        self.check_waiting(participant)
        self.declined.add(participant)
        return [ParticipantDeclined(self.member(participant), self.connections[participant])]

    def remove(self, participant: ParticipantId) -> list[CallEvent]:
        """Out of the call and barred: only `readmit` lets the seat back in."""
        self._open()
        if participant not in self.in_call:
            raise CallRefused("not-in-call", f"{participant} is not in the call")
        self.barred.add(participant)
        connection = self.connections.pop(participant, None)
        self.reconnecting.pop(participant, None)
        return [
            ParticipantRemoved(self.member(participant), connection),
            *self._depart(participant, "removed"),
        ]

    def readmit(self, participant: ParticipantId) -> list[CallEvent]:
        """Lift a removal (the store said the seat was barred): back straight into the call."""
        self._open()
        if participant not in self.seats:
            raise CallRefused("seat-not-found", "no such seat in this visit")
        self.barred.discard(participant)
        self.admitted.add(participant)
        return [ParticipantReadmitted(participant)]

    def check_in_call(self, participant: ParticipantId) -> None:
        if participant not in self.in_call or participant not in self.connections:
            raise CallRefused("not-in-call", f"{participant} is not in the call")

    def set_assisting(self, participant: ParticipantId, on: bool) -> list[CallEvent]:
        """In an assisted visit the nurse's device can be the citizen's device too."""
        self._open()
        seat = self.seats[participant]
        if seat.role is not Role.NURSE or self.kind is not VisitKind.ASSISTED:
            raise CallRefused("forbidden", "only the nurse of an assisted visit assists")
        self.assisting = participant if on else None
        return [AssistingChanged(self.member(participant), on)]

    def fall_back_to_phone(self, participant: ParticipantId) -> list[CallEvent]:
        self._open()
        return [FellBackToPhone(self.member(participant))]

    def end(self, reason: str) -> list[CallEvent]:
        """Ended for everyone; their connections are closed by the transport. Whoever was
        expected back from a lost connection is gone now."""
        self.over = True
        return [*self._give_up_reconnecting("visit-ended"), VisitEnded(reason)]

    def cancel(self) -> list[CallEvent]:
        """Cancelled (recorded by whoever cancelled it): nobody comes in or back."""
        self.over = True
        return self._give_up_reconnecting("visit-cancelled")

    def _give_up_reconnecting(self, reason: str) -> list[CallEvent]:
        events: list[CallEvent] = []
        for participant in sorted(self.reconnecting):
            del self.reconnecting[participant]
            events += self._depart(participant, reason)
        return events

    def shut_down(self) -> list[CallEvent]:
        """This node stops and nobody takes over: everyone leaves, reason `shutdown`."""
        events: list[CallEvent] = []
        waiting = self.waiting()
        for participant in sorted(self.in_call):
            self.reconnecting.pop(participant, None)
            events += self._depart(participant, "shutdown")
        for participant in waiting:
            events.append(ParticipantLeft(self.member(participant), "shutdown", waiting=True))
        return events

    # --- media --------------------------------------------------------------------------------

    def media_failed(self, participant: ParticipantId, state: str, reason: str) -> list[CallEvent]:
        """Its media died while its seat is in the call: cut off (if connected) until it
        restarts its media or comes back. Once per failure."""
        if self.over or participant not in self.in_call or participant in self.cut_off:
            return []
        if participant in self.connections:
            self.cut_off.add(participant)
        return [MediaFailed(self.member(participant), state, reason)]

    def media_restarted(self, participant: ParticipantId) -> list[CallEvent]:
        if self.over:
            return []
        restored = participant in self.cut_off and participant in self.connections
        self.cut_off.discard(participant)
        return [MediaRestarted(self.member(participant), restored)]

    def first_frame(self, participant: ParticipantId, media: str, direction: str) -> CallEvent:
        seat = self.seats.get(participant)
        return FirstFrame(Member.of(seat) if seat else None, media, direction)

    def content_share(self, participant: ParticipantId, source: str, on: bool) -> CallEvent:
        """A shared screen or second camera began or ended (how long, by the clock)."""
        seat = self.seats.get(participant)
        member = Member.of(seat) if seat else None
        if on:
            self.sharing[(participant, source)] = self._clock()
            return ContentShared(member, source)
        began = self.sharing.pop((participant, source), None)
        seconds = round(self._clock() - began, 1) if began is not None else None
        return ContentShared(member, source, seconds, started=False)

    # --- leaving ------------------------------------------------------------------------------

    def leave(
        self, participant: ParticipantId, connection: ConnectionId, *, explicit: bool, reason: str
    ) -> list[CallEvent]:
        """`connection` closed (`explicit`: the participant said so). A connection that is not
        the seat's current one changes nothing."""
        if self.connections.get(participant) != connection:
            return []
        del self.connections[participant]
        member = self.member(participant)
        if participant not in self.in_call:
            return [ParticipantLeft(member, "left-waiting-room", waiting=True)]
        if self.over:
            return self._depart(participant, "visit-ended")
        if explicit:
            return self._depart(participant, "left")
        self.cut_off.discard(participant)
        until = self._clock() + self._grace
        self.reconnecting[participant] = until
        return [ParticipantReconnecting(member, reason, until)]

    def expire(self) -> list[CallEvent]:
        """Give up the seats whose grace deadline has passed."""
        now = self._clock()
        events: list[CallEvent] = []
        for participant, until in sorted(self.reconnecting.items()):
            if until <= now:
                del self.reconnecting[participant]
                events += self._depart(participant, "connection-lost")
        return events

    def _depart(self, participant: ParticipantId, reason: str) -> list[CallEvent]:
        self.in_call.discard(participant)
        self.cut_off.discard(participant)
        # Coming back after this needs admission again.
        self.admitted.discard(participant)
        if self.assisting == participant:
            self.assisting = None
        return [ParticipantLeft(self.member(participant), reason)]

    def _open(self) -> None:
        if self.over:
            raise CallRefused("visit-ended", "this visit has ended")
