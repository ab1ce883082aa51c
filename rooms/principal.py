"""Who is acting: the verified claims of a token, reduced to what the domain needs."""

from dataclasses import dataclass

from rooms.ids import ParticipantId, VisitId
from rooms.roles import Role, Sector


@dataclass(frozen=True)
class Principal:
    """An authenticated actor.

    `subject` is the issuer's opaque id; it never leaves the audit log.
    """

    subject: str
    issuer: str
    role: Role
    sector: Sector
    org: str | None = None
    visit: VisitId | None = None
    participant: ParticipantId | None = None
    name: str | None = None
    token_id: str | None = None
    expires_at: float | None = None
    #: What it may publish (rooms.policy.SOURCES), when its token says; None: its role's default.
    sources: frozenset[str] | None = None
