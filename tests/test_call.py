"""The call as a domain object, without sockets: plain calls in, typed events out, a clock the
test moves. Unit tests of each rule, then hypothesis drives random joins, leaves, admissions,
removals, reconnects and clock advances and checks the invariants after every step."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rooms.call import (
    HOST_MESSAGES,
    Call,
    CallEvent,
    CallRefused,
    ConnectionId,
    ConnectionReplaced,
    MediaFailed,
    MediaRestarted,
    ParticipantAdmitted,
    ParticipantDeclined,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantReconnecting,
    ParticipantRemoved,
    ParticipantWaiting,
    VisitEnded,
    VisitMoved,
)
from rooms.call_journal import visit_event
from rooms.eventlog import EventKind
from rooms.ids import ParticipantId, VisitId
from rooms.policy import Action
from rooms.roles import Role
from rooms.visit import Visit, VisitKind
from signaling.messages import TYPE_OF, HostMessage

GRACE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def booked(kind: VisitKind = VisitKind.CONSULTATION, waiting_room: bool = True) -> Visit:
    visit = Visit(VisitId("v-call"), kind, "org-a", created_at=0.0, waiting_room=waiting_room)
    for role in (Role.GP, Role.CITIZEN, Role.RELATIVE, Role.NURSE):
        visit.add_seat(role)
    return visit


def seat_of(visit: Visit, role: Role) -> ParticipantId:
    return next(s.participant for s in visit.seats.values() if s.role is role)


def new_call(visit: Visit, clock: Clock) -> Call:
    call = Call(visit.id, grace=GRACE, clock=clock)
    call.sync(visit)
    return call


def kinds(events: list[CallEvent]) -> list[type]:
    return [type(e) for e in events]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_host_goes_straight_in_and_a_guest_waits_until_admitted(clock: Clock) -> None:
    visit = booked()
    call = new_call(visit, clock)
    gp, citizen = seat_of(visit, Role.GP), seat_of(visit, Role.CITIZEN)
    entry = call.enter(gp, ConnectionId(1))
    assert (entry.reconnect, entry.waiting) == (False, False)
    assert kinds(entry.events) == [ParticipantJoined]
    entry = call.enter(citizen, ConnectionId(2))
    assert entry.waiting and kinds(entry.events) == [ParticipantWaiting]
    assert call.waiting() == [citizen]
    with pytest.raises(CallRefused) as refused:
        call.check_message(citizen, "offer")
    assert refused.value.code == "not-admitted"
    events = call.admit(citizen)
    assert kinds(events) == [ParticipantAdmitted, ParticipantJoined]
    assert call.waiting() == [] and citizen in call.in_call
    assert call.check_message(citizen, "offer") is None
    with pytest.raises(CallRefused, match="not waiting"):
        call.admit(citizen)


def test_no_waiting_room_lets_everyone_in(clock: Clock) -> None:
    visit = booked(waiting_room=False)
    call = new_call(visit, clock)
    entry = call.enter(seat_of(visit, Role.CITIZEN), ConnectionId(1))
    assert not entry.waiting


def test_a_lost_connection_keeps_the_seat_for_the_grace_period(clock: Clock) -> None:
    visit = booked()
    call = new_call(visit, clock)
    gp, citizen = seat_of(visit, Role.GP), seat_of(visit, Role.CITIZEN)
    call.enter(gp, ConnectionId(1))
    call.enter(citizen, ConnectionId(2))
    call.admit(citizen)
    events = call.leave(citizen, ConnectionId(2), explicit=False, reason="no-pong")
    assert events == [ParticipantReconnecting(call.member(citizen), "no-pong", 1000.0 + GRACE)]
    clock.now += GRACE - 1
    assert call.expire() == []
    # Back within the grace period: straight into the call, as a reconnect.
    entry = call.enter(citizen, ConnectionId(3))
    assert entry.reconnect and not entry.waiting
    assert entry.events == [ParticipantJoined(call.member(citizen), True, True)]
    call.leave(citizen, ConnectionId(3), explicit=False, reason="socket-closed")
    clock.now += GRACE
    assert call.expire() == [ParticipantLeft(call.member(citizen), "connection-lost")]
    # Gone for good: admission again.
    assert call.enter(citizen, ConnectionId(4)).waiting


def test_whoever_is_expected_back_is_gone_when_the_visit_ends_or_is_cancelled(
    clock: Clock,
) -> None:
    # Found by the state machine below: the end left a reconnecting seat "in the call".
    for close, reason in (
        (lambda c: c.end("host"), "visit-ended"),
        (Call.cancel, "visit-cancelled"),
    ):
        visit = booked(waiting_room=False)
        call = new_call(visit, clock)
        gp, citizen = seat_of(visit, Role.GP), seat_of(visit, Role.CITIZEN)
        call.enter(gp, ConnectionId(1))
        call.enter(citizen, ConnectionId(2))
        call.leave(citizen, ConnectionId(2), explicit=False, reason="no-pong")
        events = close(call)
        assert ParticipantLeft(call.member(citizen), reason) in events
        assert citizen not in call.in_call and call.reconnecting == {}
        assert gp in call.in_call  # still connected: the transport closes it


def test_a_second_tab_replaces_the_first_whose_close_then_changes_nothing(clock: Clock) -> None:
    visit = booked()
    call = new_call(visit, clock)
    gp = seat_of(visit, Role.GP)
    call.enter(gp, ConnectionId(1))
    entry = call.enter(gp, ConnectionId(2))
    assert entry.reconnect
    assert kinds(entry.events) == [ConnectionReplaced, ParticipantJoined]
    assert call.leave(gp, ConnectionId(1), explicit=True, reason="left") == []
    assert call.connections == {gp: ConnectionId(2)}


def test_a_removed_participant_stays_out_until_readmitted(clock: Clock) -> None:
    visit = booked()
    call = new_call(visit, clock)
    gp, citizen = seat_of(visit, Role.GP), seat_of(visit, Role.CITIZEN)
    call.enter(gp, ConnectionId(1))
    call.enter(citizen, ConnectionId(2))
    call.admit(citizen)
    events = call.remove(citizen)
    assert kinds(events) == [ParticipantRemoved, ParticipantLeft]
    assert events[0] == ParticipantRemoved(call.member(citizen), ConnectionId(2))
    assert citizen not in call.connections and citizen not in call.in_call
    # Its socket closing afterwards changes nothing.
    assert call.leave(citizen, ConnectionId(2), explicit=False, reason="socket-closed") == []
    with pytest.raises(CallRefused) as refused:
        call.enter(citizen, ConnectionId(3))
    assert refused.value.code == "barred"
    call.readmit(citizen)
    entry = call.enter(citizen, ConnectionId(4))
    assert not entry.waiting


def test_a_declined_guest_is_told_and_leaves_from_the_waiting_room(clock: Clock) -> None:
    visit = booked()
    call = new_call(visit, clock)
    citizen = seat_of(visit, Role.CITIZEN)
    call.enter(citizen, ConnectionId(7))
    assert call.decline(citizen) == [ParticipantDeclined(call.member(citizen), ConnectionId(7))]
    events = call.leave(citizen, ConnectionId(7), explicit=False, reason="socket-closed")
    assert events == [ParticipantLeft(call.member(citizen), "left-waiting-room", waiting=True)]
    # Knocking again later is a repeat.
    again = call.enter(citizen, ConnectionId(8)).events
    assert again == [ParticipantWaiting(call.member(citizen), True)]


def test_media_failure_cuts_off_once_and_a_restart_brings_it_back(clock: Clock) -> None:
    visit = booked(waiting_room=False)
    call = new_call(visit, clock)
    nurse = seat_of(visit, Role.NURSE)
    call.enter(nurse, ConnectionId(1))
    failed = call.media_failed(nurse, "connected", "no-media-received")
    assert failed == [MediaFailed(call.member(nurse), "connected", "no-media-received")]
    assert call.media_failed(nurse, "failed", "peer-connection-failed") == []
    assert call.connected() == 0
    assert call.media_restarted(nurse) == [MediaRestarted(call.member(nurse), True)]
    assert call.connected() == 1


def test_an_ended_call_takes_nothing_and_those_leaving_leave_for_good(clock: Clock) -> None:
    visit = booked()
    call = new_call(visit, clock)
    gp, citizen = seat_of(visit, Role.GP), seat_of(visit, Role.CITIZEN)
    call.enter(gp, ConnectionId(1))
    call.enter(citizen, ConnectionId(2))
    assert call.end("host") == [VisitEnded("host")]
    for act in (
        lambda: call.enter(seat_of(visit, Role.RELATIVE), ConnectionId(3)),
        lambda: call.admit(citizen),
        lambda: call.remove(gp),
        lambda: call.check_message(gp, "admit"),
    ):
        with pytest.raises(CallRefused) as refused:
            act()
        assert refused.value.code == "visit-ended"
    assert call.check_message(gp, "leave") is None
    events = call.leave(gp, ConnectionId(1), explicit=False, reason="socket-closed")
    assert events == [ParticipantLeft(call.member(gp), "visit-ended")]
    assert call.reconnecting == {}


def test_a_visit_taken_over_expects_its_call_back_without_a_waiting_room(clock: Clock) -> None:
    visit = booked()
    call = new_call(visit, clock)
    citizen = seat_of(visit, Role.CITIZEN)
    events = call.adopt({citizen, ParticipantId("p-unknown")}, "node-b")
    assert kinds(events) == [VisitMoved, ParticipantReconnecting]
    assert call.enter(citizen, ConnectionId(1)).events == [
        ParticipantJoined(call.member(citizen), True, True)
    ]


def test_only_the_nurse_of_an_assisted_visit_assists_and_hosts_it(clock: Clock) -> None:
    visit = booked(kind=VisitKind.ASSISTED)
    call = new_call(visit, clock)
    nurse, citizen = seat_of(visit, Role.NURSE), seat_of(visit, Role.CITIZEN)
    assert not call.enter(nurse, ConnectionId(1)).waiting
    call.set_assisting(nurse, True)
    assert call.assisting == nurse
    with pytest.raises(CallRefused):
        call.set_assisting(citizen, True)


def test_one_rights_table_names_every_host_message() -> None:
    assert {TYPE_OF[cls] for cls in get_args(HostMessage)} == set(HOST_MESSAGES)
    assert HOST_MESSAGES["remove"] is Action.MODERATE
    call = new_call(booked(), Clock())
    citizen = seat_of(booked(), Role.CITIZEN)
    # A host-only message is passed on for authorization (audited), even from the waiting room.
    assert call.check_message(citizen, "end") is Action.END_VISIT


def test_events_become_event_log_rows_without_names(clock: Clock) -> None:
    visit = booked()
    visit.seats[seat_of(visit, Role.CITIZEN)].name = "Karen Jensen"
    call = new_call(visit, clock)
    citizen = seat_of(visit, Role.CITIZEN)
    events = call.enter(citizen, ConnectionId(1)).events + call.admit(citizen)
    rows = [visit_event(visit.id, "org-a", e) for e in events]
    assert [r.kind for r in rows if r] == [
        EventKind.PARTICIPANT_WAITING,
        EventKind.PARTICIPANT_ADMITTED,
        EventKind.PARTICIPANT_JOINED,
    ]
    assert all("Karen" not in repr(e) for e in events)


# --- invariants under random histories ---------------------------------------------------------

ROLES = (Role.GP, Role.CITIZEN, Role.RELATIVE, Role.NURSE)


class CallMachine(RuleBasedStateMachine):
    """Random histories of one call; a model of what the test did, checked against the call."""

    @initialize(waiting_room=st.booleans(), assisted=st.booleans())
    def book(self, waiting_room: bool, assisted: bool) -> None:
        self.clock = Clock()
        kind = VisitKind.ASSISTED if assisted else VisitKind.CONSULTATION
        self.visit = booked(kind, waiting_room)
        self.call = new_call(self.visit, self.clock)
        self.seats = [seat_of(self.visit, role) for role in ROLES]
        self.next_connection = 0
        #: The connection the test believes each seat is on (None: none).
        self.open: dict[ParticipantId, ConnectionId] = {}
        #: Admitted (or a host, or let in) since they last left the call for good.
        self.let_in: set[ParticipantId] = set()
        self.removed: set[ParticipantId] = set()
        self.ended = False

    def _see(self, events: list[CallEvent]) -> None:
        for event in events:
            match event:
                case ParticipantJoined(member=member):
                    self.let_in.add(member.participant)
                case ParticipantWaiting(member=member):
                    assert member.participant not in self.let_in, "admitted, yet waiting again"
                case ParticipantLeft(member=member, waiting=False):
                    self.let_in.discard(member.participant)
                case ParticipantRemoved(member=member):
                    self.open.pop(member.participant, None)
                case ConnectionReplaced(connection=connection):
                    assert connection not in self.open.values()
            if self.ended:
                assert isinstance(event, ParticipantLeft), f"{event} after the end"

    @rule(who=st.integers(0, 3))
    def connect(self, who: int) -> None:
        participant = self.seats[who]
        self.next_connection += 1
        connection = ConnectionId(self.next_connection)
        try:
            entry = self.call.enter(participant, connection)
        except CallRefused as exc:
            assert exc.code == ("visit-ended" if self.ended else "barred")
            assert self.ended or participant in self.removed
            return
        assert not self.ended and participant not in self.removed
        self.open[participant] = connection
        self._see(entry.events)

    @rule(who=st.integers(0, 3), explicit=st.booleans(), stale=st.booleans())
    def disconnect(self, who: int, explicit: bool, stale: bool) -> None:
        participant = self.seats[who]
        current = self.open.get(participant)
        connection = ConnectionId(0) if stale or current is None else current
        events = self.call.leave(participant, connection, explicit=explicit, reason="lost")
        if connection == ConnectionId(0):
            assert events == []
            return
        self.open.pop(participant)
        self._see(events)

    @rule(who=st.integers(0, 3))
    def admit(self, who: int) -> None:
        self._decide(lambda p: self.call.admit(p), who)

    @rule(who=st.integers(0, 3))
    def decline(self, who: int) -> None:
        self._decide(lambda p: self.call.decline(p), who)

    @rule(who=st.integers(0, 3))
    def remove(self, who: int) -> None:
        if self._decide(lambda p: self.call.remove(p), who):
            self.removed.add(self.seats[who])

    @rule(who=st.integers(0, 3))
    def readmit(self, who: int) -> None:
        participant = self.seats[who]
        if participant in self.removed and self._decide(lambda p: self.call.readmit(p), who):
            self.removed.discard(participant)

    @rule(who=st.integers(0, 3))
    def media_fails(self, who: int) -> None:
        self._see(self.call.media_failed(self.seats[who], "failed", "peer-connection-failed"))

    @rule(who=st.integers(0, 3))
    def media_restarts(self, who: int) -> None:
        if self.seats[who] in self.call.in_call and self.seats[who] in self.open:
            self._see(self.call.media_restarted(self.seats[who]))

    @rule(seconds=st.floats(0, 2 * GRACE))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        self._see(self.call.expire())
        assert all(until > self.clock.now for until in self.call.reconnecting.values())

    @rule()
    def end(self) -> None:
        if not self.ended:
            self._see(self.call.end("host"))
            self.ended = True

    def _decide(self, decide: object, who: int) -> bool:
        assert callable(decide)
        try:
            events = decide(self.seats[who])
        except CallRefused:
            return False
        assert not self.ended, "an ended call took a decision"
        self._see(events)
        return True

    @invariant()
    def a_seat_is_held_by_at_most_one_connection(self) -> None:
        held = list(self.call.connections.values())
        assert len(held) == len(set(held))
        assert self.call.connections == self.open

    @invariant()
    def a_removed_participant_is_out(self) -> None:
        for participant in self.removed:
            assert participant in self.call.barred
            assert participant not in self.call.in_call
            assert participant not in self.call.connections
            assert participant not in self.call.admitted

    @invariant()
    def an_admitted_participant_is_never_in_the_waiting_room(self) -> None:
        assert not set(self.call.waiting()) & (self.call.admitted | self.call.in_call)
        assert not set(self.call.waiting()) & self.let_in

    @invariant()
    def hosts_never_wait(self) -> None:
        assert not [p for p in self.call.waiting() if self.call.is_host(p)]

    @invariant()
    def reconnecting_and_cut_off_seats_are_in_the_call(self) -> None:
        reconnecting = set(self.call.reconnecting)
        assert reconnecting <= self.call.in_call
        assert not reconnecting & set(self.call.connections)
        assert self.call.cut_off <= self.call.in_call & set(self.call.connections)
        assert self.call.in_call <= reconnecting | set(self.call.connections)
        assert self.call.in_call <= self.call.admitted

    @invariant()
    def an_ended_call_expects_nobody_back(self) -> None:
        if self.ended:
            assert self.call.reconnecting == {}


CallMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_call_invariants = CallMachine.TestCase
