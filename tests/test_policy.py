import pytest

from rooms.errors import EntryRefused, NotPermitted
from rooms.ids import ParticipantId, VisitId
from rooms.policy import Action, authorize, check_entry
from rooms.principal import Principal
from rooms.roles import Role, Sector
from rooms.visit import Visit, VisitKind


def visit_with_citizen() -> tuple[Visit, ParticipantId]:
    visit = Visit(VisitId("v-a"), VisitKind.CONSULTATION, "practice-1", created_at=0.0)
    return visit, visit.add_seat(Role.CITIZEN).participant


def citizen(visit: str, participant: str, role: Role = Role.CITIZEN) -> Principal:
    return Principal(
        subject=participant,
        issuer="i",
        role=role,
        sector=Sector.CITIZEN,
        visit=VisitId(visit),
        participant=ParticipantId(participant),
    )


def test_a_seat_holder_may_join_their_own_visit() -> None:
    visit, seat = visit_with_citizen()
    authorize(citizen("v-a", seat), Action.JOIN, visit)


@pytest.mark.parametrize(
    ("principal_visit", "seat_ok", "role", "reason"),
    [
        ("v-b", True, Role.CITIZEN, "another visit"),
        ("v-a", False, Role.CITIZEN, "no seat"),
        ("v-a", True, Role.RELATIVE, "does not match"),
    ],
)
def test_join_is_refused_outside_the_seat(
    principal_visit: str, seat_ok: bool, role: Role, reason: str
) -> None:
    visit, seat = visit_with_citizen()
    with pytest.raises(NotPermitted, match=reason):
        authorize(citizen(principal_visit, seat if seat_ok else "p-x", role), Action.JOIN, visit)


def test_citizens_cannot_create_visits_and_clinicians_only_read_their_org() -> None:
    visit, seat = visit_with_citizen()
    with pytest.raises(NotPermitted):
        authorize(citizen("v-a", seat), Action.CREATE_VISIT)
    gp = Principal("gp", "i", Role.GP, Sector.GENERAL_PRACTICE, org="practice-1")
    authorize(gp, Action.CREATE_VISIT)
    authorize(gp, Action.READ_VISIT, visit)
    other = Principal("gp2", "i", Role.GP, Sector.GENERAL_PRACTICE, org="practice-2")
    with pytest.raises(NotPermitted, match="another organisation"):
        authorize(other, Action.READ_VISIT, visit)


def test_entry_is_refused_while_removed_and_within_the_knock_pause() -> None:
    visit, seat = visit_with_citizen()
    check_entry(visit, seat, now=0.0, knock_pause=60)
    visit.note_declined(seat, 100.0)
    with pytest.raises(EntryRefused) as caught:
        check_entry(visit, seat, now=130.0, knock_pause=60)
    assert (caught.value.code, caught.value.retry_after) == ("knock-too-soon", 30.0)
    check_entry(visit, seat, now=160.0, knock_pause=60)
    visit.bar(seat)
    with pytest.raises(EntryRefused) as caught:
        check_entry(visit, seat, now=1e9, knock_pause=60)
    assert (caught.value.code, caught.value.retry_after) == ("barred", None)
    visit.readmit(seat)
    check_entry(visit, seat, now=1e9, knock_pause=60)
