"""Opaque identifiers. Distinct types so that a visit id is never passed as a participant id."""

import secrets
from typing import NewType

VisitId = NewType("VisitId", str)
ParticipantId = NewType("ParticipantId", str)

#: The shape of every visit id this server makes (and of the ids it writes to the audit log).
VISIT_ID_PATTERN = r"v-[A-Za-z0-9_-]{1,64}"


def new_visit_id() -> VisitId:
    return VisitId("v-" + secrets.token_urlsafe(9))


def new_participant_id() -> ParticipantId:
    """A pseudonymous id for one seat in one visit; never derived from a person's identity."""
    return ParticipantId("p-" + secrets.token_urlsafe(9))
