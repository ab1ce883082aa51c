"""What each role may do. Every HTTP endpoint and signaling message is checked against TABLE."""

from enum import StrEnum

from rooms.errors import NotPermitted
from rooms.principal import Principal
from rooms.roles import Role
from rooms.visit import Visit


class Action(StrEnum):
    CREATE_VISIT = "create-visit"
    READ_VISIT = "read-visit"
    JOIN = "join"


TABLE: dict[Role, frozenset[Action]] = {
    Role.CITIZEN: frozenset({Action.JOIN}),
    Role.RELATIVE: frozenset({Action.JOIN}),
    Role.INTERPRETER: frozenset({Action.JOIN}),
    Role.NURSE: frozenset({Action.JOIN, Action.CREATE_VISIT, Action.READ_VISIT}),
    Role.GP: frozenset({Action.JOIN, Action.CREATE_VISIT, Action.READ_VISIT}),
    Role.SPECIALIST: frozenset({Action.JOIN, Action.CREATE_VISIT, Action.READ_VISIT}),
    Role.EVALUATOR: frozenset(),
    Role.ADMIN: frozenset(),
}


def authorize(principal: Principal, action: Action, visit: Visit | None = None) -> None:
    """Raise NotPermitted unless `principal` may perform `action` (on `visit`, when given)."""
    if action not in TABLE[principal.role]:
        raise NotPermitted(f"role {principal.role.value} may not {action.value}")
    if visit is None:
        return
    if action is Action.JOIN:
        if principal.visit != visit.id:
            raise NotPermitted("this link belongs to another visit")
        if principal.participant is None or principal.participant not in visit.seats:
            raise NotPermitted("this link has no seat in the visit")
        if visit.seats[principal.participant].role is not principal.role:
            raise NotPermitted("the link's role does not match its seat")
    elif principal.org != visit.org:
        raise NotPermitted("the visit belongs to another organisation")
