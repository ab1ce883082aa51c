import pytest

from rooms.errors import InvalidTransition, SeatNotFound, VisitFull
from rooms.ids import ParticipantId, VisitId
from rooms.roles import Role, Sector
from rooms.visit import Visit, VisitKind, VisitState


def make_visit() -> Visit:
    return Visit(VisitId("v-1"), VisitKind.ASSISTED, "org-1", created_at=1.0)


def test_seats_get_pseudonymous_ids_and_default_sectors() -> None:
    visit = make_visit()
    nurse = visit.add_seat(Role.NURSE)
    citizen = visit.add_seat(Role.CITIZEN, name="Inger")
    assert nurse.sector is Sector.MUNICIPALITY and citizen.sector is Sector.CITIZEN
    assert nurse.participant != citizen.participant
    assert nurse.participant.startswith("p-")
    assert visit.seat(citizen.participant).name == "Inger"
    with pytest.raises(SeatNotFound):
        visit.seat(ParticipantId("p-nobody"))


def test_a_visit_holds_at_most_max_participants() -> None:
    visit = make_visit()
    for _ in range(visit.max_participants):
        visit.add_seat(Role.RELATIVE)
    with pytest.raises(VisitFull):
        visit.add_seat(Role.INTERPRETER)


def test_state_machine_allows_the_forward_path_only() -> None:
    visit = make_visit()
    visit.transition(VisitState.OPEN)
    visit.transition(VisitState.IN_PROGRESS)
    with pytest.raises(InvalidTransition) as caught:
        visit.transition(VisitState.CANCELLED)
    assert caught.value.current == "in-progress"
    visit.transition(VisitState.ENDED)
    assert not visit.is_live
    with pytest.raises(InvalidTransition):
        visit.transition(VisitState.OPEN)


def test_round_trip_through_dict() -> None:
    visit = make_visit()
    visit.add_seat(Role.GP, name="Dr. Hansen")
    visit.transition(VisitState.OPEN)
    assert Visit.from_dict(visit.to_dict()) == visit
