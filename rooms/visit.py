"""A visit and its seats, with the one state machine that says how a visit may move.

A visit holds no free text about the citizen: no title, no reason, no notes. What it holds is the
booking (kind, planned start and length, waiting room, how many seats) and pseudonymous seats.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from rooms.errors import InvalidTransition, SeatNotFound, VisitFull
from rooms.ids import ParticipantId, VisitId, new_participant_id
from rooms.roles import DEFAULT_SECTOR, Role, Sector


class VisitKind(StrEnum):
    CONSULTATION = "consultation"
    ASSISTED = "assisted"
    CONFERENCE = "conference"


class VisitState(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    IN_PROGRESS = "in-progress"
    ENDED = "ended"
    CANCELLED = "cancelled"


ALLOWED_TRANSITIONS: dict[VisitState, frozenset[VisitState]] = {
    VisitState.SCHEDULED: frozenset({VisitState.OPEN, VisitState.CANCELLED, VisitState.ENDED}),
    VisitState.OPEN: frozenset({VisitState.IN_PROGRESS, VisitState.ENDED, VisitState.CANCELLED}),
    VisitState.IN_PROGRESS: frozenset({VisitState.ENDED}),
    VisitState.ENDED: frozenset(),
    VisitState.CANCELLED: frozenset(),
}

#: States in which the booking (time, length, waiting room, seats, kind) may still change, and
#: from which a visit may be cancelled. Once someone is in the call it can only end.
BOOKING_STATES = frozenset({VisitState.SCHEDULED, VisitState.OPEN})

#: Seats a visit of each kind must have. A conference is a GP and a specialist conferring, with
#: or without the citizen (and whoever accompanies the citizen).
REQUIRED_ROLES: dict[VisitKind, frozenset[Role]] = {
    VisitKind.CONFERENCE: frozenset({Role.GP, Role.SPECIALIST}),
}

DEFAULT_MAX_PARTICIPANTS = 6
MIN_PARTICIPANTS = 2
MAX_PARTICIPANTS = 12
DEFAULT_PLANNED_MINUTES = 15
MAX_PLANNED_MINUTES = 480


@dataclass
class Seat:
    """One invited place in a visit. The id is pseudonymous and local to this visit."""

    participant: ParticipantId
    role: Role
    sector: Sector
    name: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "participant": self.participant,
            "role": self.role.value,
            "sector": self.sector.value,
            "name": self.name,
        }


@dataclass
class Visit:
    id: VisitId
    kind: VisitKind
    org: str
    created_at: float
    state: VisitState = VisitState.SCHEDULED
    seats: dict[ParticipantId, Seat] = field(default_factory=dict)
    max_participants: int = DEFAULT_MAX_PARTICIPANTS
    #: Unix time the visit is planned to start; None when it is not planned for a time.
    planned_start: float | None = None
    planned_minutes: int = DEFAULT_PLANNED_MINUTES
    #: Whether non-host participants wait until a host lets them in; can be switched off per visit.
    waiting_room: bool = True
    #: Unix time of the last change; 0 (the default) means "when it was created".
    updated_at: float = 0.0
    #: Seats the host removed: they stay out, from any tab or node, until a host readmits them.
    removed: set[ParticipantId] = field(default_factory=set)
    #: Unix time each seat was last declined in the waiting room (it may knock again later).
    declined: dict[ParticipantId, float] = field(default_factory=dict)
    #: Counts the stored changes (see rooms.durable_store): of two copies, the higher is newer.
    revision: int = 0
    #: The highest lease epoch that has written this visit's live state: a write under a
    #: lower one comes from a node whose lease was taken over, and is refused (rooms.store).
    fence: int = 0

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at

    def touch(self, now: float | None = None) -> None:
        """Mark the visit as changed now (never moving `updated_at` backwards)."""
        self.updated_at = max(self.updated_at, time.time() if now is None else now)

    @property
    def is_live(self) -> bool:
        return self.state in (VisitState.SCHEDULED, VisitState.OPEN, VisitState.IN_PROGRESS)

    def add_seat(self, role: Role, name: str | None = None, sector: Sector | None = None) -> Seat:
        if len(self.seats) >= self.max_participants:
            raise VisitFull(
                f"visit {self.id} already has {len(self.seats)} of "
                f"{self.max_participants} participants"
            )
        seat = Seat(new_participant_id(), role, sector or DEFAULT_SECTOR[role], name)
        self.seats[seat.participant] = seat
        return seat

    def missing_roles(self, kind: VisitKind | None = None) -> list[Role]:
        """Roles a visit of `kind` (default: its own) needs and has no seat for."""
        have = {seat.role for seat in self.seats.values()}
        return sorted(REQUIRED_ROLES.get(kind or self.kind, frozenset()) - have)

    def set_max_participants(self, limit: int) -> None:
        """Change how many seats the visit may have; never below the seats it already has."""
        if limit < len(self.seats):
            raise VisitFull(
                f"visit {self.id} already has {len(self.seats)} participants, more than {limit}"
            )
        self.max_participants = limit

    def seat(self, participant: ParticipantId) -> Seat:
        try:
            return self.seats[participant]
        except KeyError:
            raise SeatNotFound(f"no seat {participant} in visit {self.id}") from None

    def bar(self, participant: ParticipantId) -> None:
        """Keep a removed seat out until `readmit`."""
        self.seat(participant)
        self.removed.add(participant)

    def readmit(self, participant: ParticipantId) -> bool:
        """Lift a removal; False if the seat was not barred."""
        if participant not in self.removed:
            return False
        self.removed.discard(participant)
        return True

    def note_declined(self, participant: ParticipantId, now: float) -> None:
        self.seat(participant)
        self.declined[participant] = now

    def transition(self, new: VisitState) -> None:
        """Move to `new`, or raise InvalidTransition naming the current state."""
        if new == self.state:
            return
        if new not in ALLOWED_TRANSITIONS[self.state]:
            raise InvalidTransition(
                f"visit {self.id} cannot go from {self.state.value} to {new.value}",
                current=self.state.value,
            )
        self.state = new
        self.touch()

    def ensure_bookable(self) -> None:
        """Raise InvalidTransition (naming the current state) unless the booking may change."""
        if self.state not in BOOKING_STATES:
            raise InvalidTransition(
                f"visit {self.id} has state {self.state.value}; only a scheduled or open visit"
                " can be changed",
                current=self.state.value,
            )

    def cancel(self) -> None:
        """Cancel a scheduled or open visit. Unlike `transition`, cancelling a cancelled visit is
        an error too, so that a second cancel is answered with the current state."""
        if self.state not in BOOKING_STATES:
            raise InvalidTransition(
                f"visit {self.id} cannot be cancelled: it has state {self.state.value}",
                current=self.state.value,
            )
        self.transition(VisitState.CANCELLED)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "org": self.org,
            "created_at": self.created_at,
            "state": self.state.value,
            "max_participants": self.max_participants,
            "planned_start": self.planned_start,
            "planned_minutes": self.planned_minutes,
            "waiting_room": self.waiting_room,
            "updated_at": self.updated_at,
            "revision": self.revision,
            "fence": self.fence,
            "seats": [seat.to_dict() for seat in self.seats.values()],
            "removed": sorted(self.removed),
            "declined": dict(self.declined),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Visit:
        seats_raw = data["seats"]
        assert isinstance(seats_raw, list)
        seats = {
            ParticipantId(s["participant"]): Seat(
                ParticipantId(s["participant"]), Role(s["role"]), Sector(s["sector"]), s["name"]
            )
            for s in seats_raw
        }
        created_at = data["created_at"]
        max_participants = data.get("max_participants", DEFAULT_MAX_PARTICIPANTS)
        planned_start = data.get("planned_start")
        planned_minutes = data.get("planned_minutes", DEFAULT_PLANNED_MINUTES)
        waiting_room = data.get("waiting_room", True)
        updated_at = data.get("updated_at", created_at)
        removed = data.get("removed", [])
        declined = data.get("declined", {})
        assert isinstance(removed, list) and isinstance(declined, dict)
        revision = data.get("revision", 0)
        fence = data.get("fence", 0)
        assert isinstance(fence, int)
        assert isinstance(created_at, int | float) and isinstance(max_participants, int)
        assert planned_start is None or isinstance(planned_start, int | float)
        assert isinstance(planned_minutes, int) and isinstance(waiting_room, bool)
        assert isinstance(updated_at, int | float) and isinstance(revision, int)
        return cls(
            id=VisitId(str(data["id"])),
            kind=VisitKind(str(data["kind"])),
            org=str(data["org"]),
            created_at=float(created_at),
            state=VisitState(str(data["state"])),
            seats=seats,
            max_participants=max_participants,
            planned_start=None if planned_start is None else float(planned_start),
            planned_minutes=planned_minutes,
            waiting_room=waiting_room,
            updated_at=float(updated_at),
            removed={ParticipantId(str(p)) for p in removed},
            declined={ParticipantId(str(p)): float(t) for p, t in declined.items()},
            revision=revision,
            fence=fence,
        )
