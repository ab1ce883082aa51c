"""A visit and its seats, with the one state machine that says how a visit may move."""

from __future__ import annotations

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

DEFAULT_MAX_PARTICIPANTS = 6


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

    def seat(self, participant: ParticipantId) -> Seat:
        try:
            return self.seats[participant]
        except KeyError:
            raise SeatNotFound(f"no seat {participant} in visit {self.id}") from None

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

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "org": self.org,
            "created_at": self.created_at,
            "state": self.state.value,
            "max_participants": self.max_participants,
            "seats": [seat.to_dict() for seat in self.seats.values()],
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
        max_participants = data["max_participants"]
        assert isinstance(created_at, int | float) and isinstance(max_participants, int)
        return cls(
            id=VisitId(str(data["id"])),
            kind=VisitKind(str(data["kind"])),
            org=str(data["org"]),
            created_at=float(created_at),
            state=VisitState(str(data["state"])),
            seats=seats,
            max_participants=max_participants,
        )
