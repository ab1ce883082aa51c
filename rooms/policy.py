"""What each role may do. Every HTTP endpoint and every signaling message is checked here.

TABLE says which roles may attempt an action at all; `authorize` then applies the scope: a seat
in the visit, the host of the visit, or the principal's own organisation.
"""

from __future__ import annotations

from enum import StrEnum

from rooms.errors import EntryRefused, NotPermitted
from rooms.ids import ParticipantId
from rooms.principal import Principal
from rooms.roles import Role
from rooms.visit import Seat, Visit, VisitKind


class Action(StrEnum):
    CREATE_VISIT = "create-visit"
    READ_VISIT = "read-visit"
    INVITE = "invite"
    ADMIT = "admit"
    MODERATE = "moderate"
    JOIN = "join"
    #: The join page checks its link on load, before any device prompt: no seat is taken.
    CHECK_LINK = "check-link"
    END_VISIT = "end-visit"
    RECORD_OUTCOME = "record-outcome"
    ANSWER_SURVEY = "answer-survey"
    READ_EVALUATION = "read-evaluation"
    READ_AUDIT = "read-audit"
    REVOKE_TOKEN = "revoke-token"
    DRAIN_NODE = "drain-node"


class Scope(StrEnum):
    """How far an allowed action reaches."""

    ANY = "any"  # no visit involved
    OWN_ORG = "own-org"  # visits of the principal's organisation
    SEAT = "seat"  # the visit the principal holds a seat in
    HOST = "host"  # the visit's host: its GP or specialist, or the nurse of an assisted visit


_CLINICIAN = {
    Action.CREATE_VISIT: Scope.OWN_ORG,
    Action.READ_VISIT: Scope.OWN_ORG,
    Action.INVITE: Scope.HOST,
    Action.ADMIT: Scope.HOST,
    Action.MODERATE: Scope.HOST,
    Action.JOIN: Scope.SEAT,
    Action.CHECK_LINK: Scope.SEAT,
    Action.END_VISIT: Scope.HOST,
    Action.RECORD_OUTCOME: Scope.HOST,
}

TABLE: dict[Role, dict[Action, Scope]] = {
    Role.CITIZEN: {
        Action.JOIN: Scope.SEAT,
        Action.CHECK_LINK: Scope.SEAT,
        Action.ANSWER_SURVEY: Scope.SEAT,
    },
    Role.RELATIVE: {Action.JOIN: Scope.SEAT, Action.CHECK_LINK: Scope.SEAT},
    Role.INTERPRETER: {Action.JOIN: Scope.SEAT, Action.CHECK_LINK: Scope.SEAT},
    Role.NURSE: dict(_CLINICIAN),
    Role.GP: dict(_CLINICIAN),
    Role.SPECIALIST: dict(_CLINICIAN),
    # Evaluators read pseudonymous, aggregated data of their own organisation or region.
    Role.EVALUATOR: {Action.READ_EVALUATION: Scope.OWN_ORG},
    Role.ADMIN: {
        Action.READ_AUDIT: Scope.ANY,
        Action.REVOKE_TOKEN: Scope.ANY,
        Action.DRAIN_NODE: Scope.ANY,
    },
}


#: What a participant may publish (the token's `sources` claim names them, like LiveKit's
#: canPublishSources): a microphone, a camera, a shared screen, a second camera.
SOURCES = ("microphone", "camera", "screen", "camera2")
_EVERYONE = frozenset({"microphone", "camera", "camera2"})
#: Without a `sources` claim: staff may share their screen; everyone may add a second camera.
DEFAULT_SOURCES: dict[Role, frozenset[str]] = {
    Role.CITIZEN: _EVERYONE,
    Role.RELATIVE: _EVERYONE,
    Role.INTERPRETER: _EVERYONE,
    Role.NURSE: _EVERYONE | {"screen"},
    Role.GP: _EVERYONE | {"screen"},
    Role.SPECIALIST: _EVERYONE | {"screen"},
}


def publish_sources(principal: Principal) -> frozenset[str]:
    """The sources `principal` may publish: its token's grant, else its role's default."""
    if principal.sources is not None:
        return principal.sources
    return DEFAULT_SOURCES.get(principal.role, frozenset())


def is_host_role(visit: Visit, role: Role) -> bool:
    """The clinician decides; in an assisted screen visit the nurse hosts."""
    return hosts(visit.kind, role)


def hosts(kind: VisitKind, role: Role) -> bool:
    """Whether `role` hosts a visit of `kind`."""
    return role in (Role.GP, Role.SPECIALIST) or (role is Role.NURSE and kind is VisitKind.ASSISTED)


def check_entry(
    visit: Visit, participant: ParticipantId, *, now: float, knock_pause: float
) -> None:
    """Raise EntryRefused if the seat may not come in now: the host removed it (until a host
    readmits it), or declined it in the waiting room less than `knock_pause` seconds ago."""
    if participant in visit.removed:
        raise EntryRefused(
            "barred", "the host has removed you from this visit; only the host can let you in"
        )
    declined_at = visit.declined.get(participant)
    if declined_at is not None and now < declined_at + knock_pause:
        wait = declined_at + knock_pause - now
        raise EntryRefused(
            "knock-too-soon",
            f"the host did not let you in; you may knock again in {wait:.0f} s",
            retry_after=wait,
        )


def authorize(principal: Principal, action: Action, visit: Visit | None = None) -> None:
    """Raise NotPermitted unless `principal` may perform `action` (on `visit`, when given)."""
    scope = TABLE[principal.role].get(action)
    if scope is None:
        raise NotPermitted(f"role {principal.role.value} may not {action.value}")
    if (
        principal.visit is not None
        and scope is Scope.OWN_ORG
        and (visit is None or visit.id != principal.visit)
    ):
        # An invite link opens one visit; it is no key to the organisation's other visits.
        raise NotPermitted("an invite link acts only within its own visit")
    if visit is None or scope is Scope.ANY:
        return
    if scope is Scope.SEAT or (scope is Scope.HOST and principal.participant is not None):
        seat = _seat_of(principal, visit)
        if scope is Scope.HOST and not is_host_role(visit, seat.role):
            raise NotPermitted(f"only the visit's host may {action.value}")
        return
    if principal.org != visit.org:
        raise NotPermitted("the visit belongs to another organisation")
    if scope is Scope.HOST and not is_host_role(visit, principal.role):
        raise NotPermitted(f"only the visit's host may {action.value}")


def _seat_of(principal: Principal, visit: Visit) -> Seat:
    if principal.visit != visit.id:
        raise NotPermitted("this link belongs to another visit")
    seat = visit.seats.get(principal.participant) if principal.participant else None
    if seat is None:
        raise NotPermitted("this link has no seat in the visit")
    if seat.role is not principal.role:
        raise NotPermitted("the link's role does not match its seat")
    return seat


def policy_table_markdown() -> str:
    """The table as README shows it (a test keeps README in step with the code)."""
    actions = list(Action)
    lines = ["| role | " + " | ".join(a.value for a in actions) + " |"]
    lines.append("| --- |" + " --- |" * len(actions))
    for role, allowed in TABLE.items():
        cells = [allowed[a].value if a in allowed else "" for a in actions]
        lines.append(f"| {role.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
