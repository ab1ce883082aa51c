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


def test_booking_fields_round_trip_and_old_dicts_still_load() -> None:
    visit = make_visit()
    visit.planned_start = 1_900_000_000.0
    visit.planned_minutes = 45
    visit.waiting_room = False
    visit.max_participants = 3
    visit.touch(5.0)
    data = visit.to_dict()
    assert (data["planned_start"], data["planned_minutes"], data["waiting_room"]) == (
        1_900_000_000.0,
        45,
        False,
    )
    assert data["updated_at"] == 5.0
    assert Visit.from_dict(data) == visit

    old = make_visit().to_dict()
    for key in ("planned_start", "planned_minutes", "waiting_room", "updated_at"):
        del old[key]
    loaded = Visit.from_dict(old)
    assert (loaded.planned_start, loaded.planned_minutes, loaded.waiting_room) == (None, 15, True)
    assert loaded.updated_at == loaded.created_at == 1.0
    assert "title" not in data  # no free text about the citizen


def test_a_transition_moves_updated_at_forward() -> None:
    visit = make_visit()
    assert visit.updated_at == 1.0
    visit.transition(VisitState.OPEN)
    assert visit.updated_at > 1.0
    before = visit.updated_at
    visit.touch(0.5)  # never backwards
    assert visit.updated_at == before


@pytest.mark.parametrize("state", [VisitState.SCHEDULED, VisitState.OPEN])
def test_cancel_from_scheduled_or_open(state: VisitState) -> None:
    visit = make_visit()
    visit.transition(state)
    visit.ensure_bookable()
    visit.cancel()
    assert visit.state is VisitState.CANCELLED and not visit.is_live
    with pytest.raises(InvalidTransition) as again:
        visit.cancel()
    assert again.value.current == "cancelled"
    with pytest.raises(InvalidTransition):
        visit.ensure_bookable()


@pytest.mark.parametrize("path", [[VisitState.OPEN, VisitState.IN_PROGRESS], [VisitState.ENDED]])
def test_no_cancel_or_booking_change_once_in_progress_or_ended(path: list[VisitState]) -> None:
    visit = make_visit()
    for state in path:
        visit.transition(state)
    for attempt in (visit.cancel, visit.ensure_bookable):
        with pytest.raises(InvalidTransition) as caught:
            attempt()
        assert caught.value.current == path[-1].value
    assert visit.state is path[-1]


def test_max_participants_never_drops_below_the_seats() -> None:
    visit = make_visit()
    for role in (Role.CITIZEN, Role.NURSE, Role.GP):
        visit.add_seat(role)
    visit.set_max_participants(3)
    with pytest.raises(VisitFull):
        visit.set_max_participants(2)
    with pytest.raises(VisitFull):
        visit.add_seat(Role.RELATIVE)
    assert visit.max_participants == 3


def test_a_conference_needs_a_gp_and_a_specialist() -> None:
    visit = make_visit()
    visit.add_seat(Role.CITIZEN)
    visit.add_seat(Role.GP)
    assert visit.missing_roles() == []  # an assisted visit needs no particular seat
    assert visit.missing_roles(VisitKind.CONFERENCE) == [Role.SPECIALIST]
    visit.add_seat(Role.SPECIALIST)
    assert visit.missing_roles(VisitKind.CONFERENCE) == []


def test_removal_and_decline_bars_round_trip_and_old_visits_have_none() -> None:
    visit = make_visit()
    removed = visit.add_seat(Role.RELATIVE).participant
    declined = visit.add_seat(Role.CITIZEN).participant
    visit.bar(removed)
    visit.note_declined(declined, 50.0)
    loaded = Visit.from_dict(visit.to_dict())
    assert (loaded.removed, loaded.declined) == ({removed}, {declined: 50.0})
    assert loaded.readmit(removed) is True and loaded.readmit(removed) is False
    assert loaded.removed == set()
    with pytest.raises(SeatNotFound):
        visit.bar(ParticipantId("p-nobody"))
    old = make_visit().to_dict()
    del old["removed"], old["declined"]
    assert Visit.from_dict(old).removed == set() and Visit.from_dict(old).declined == {}
