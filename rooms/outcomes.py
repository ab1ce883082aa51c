"""Recording what evaluators need at the end of a visit: the clinical outcome and the citizen's
experience. One path for the host's page (signaling) and the HTTP API.

The outcome's optional free text is kept for the clinician only, in its own table, and is never
part of the event log or of any evaluation export.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rooms.eventlog import EventKind, EventLog, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.quality_log import OutcomeStore, SurveyStore
from rooms.visit import Seat

DEFAULT_OUTCOMES = (
    "handled-remotely",
    "physical-visit-needed",
    "referred-to-hospital",
    "admission-avoided",
    "new-video-visit",
    "other",
)
MAX_NOTE_CHARS = 2000
SURVEY_QUESTIONS = ("q1", "q2", "q3")


class OutcomeRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class OutcomeRecorder:
    outcomes: tuple[str, ...]
    outcome_store: OutcomeStore
    survey_store: SurveyStore
    events: EventLog

    async def record_outcome(
        self,
        visit: VisitId,
        org: str | None,
        by: Seat | None,
        role: str,
        sector: str,
        outcome: str,
        note: str | None,
    ) -> None:
        """Committed before it returns, so an acknowledged outcome survives a crash."""
        if outcome not in self.outcomes:
            raise OutcomeRejected(
                "unknown-outcome", f"outcome must be one of {', '.join(self.outcomes)}"
            )
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise OutcomeRejected("invalid-field", f"a note has at most {MAX_NOTE_CHARS} chars")
        now = time.time()
        await self.outcome_store.record(visit, outcome, note.strip() if note else None, now)
        await self.events.append(
            VisitEvent(
                visit=visit,
                kind=EventKind.OUTCOME_RECORDED,
                participant=by.participant if by else None,
                role=role,
                sector=sector,
                org=org,
                data={"outcome": outcome},
                time=now,
            )
        )

    async def record_survey(
        self, visit: VisitId, org: str | None, seat: Seat, answers: dict[str, object]
    ) -> tuple[int | None, int | None, int | None]:
        values: list[int | None] = []
        for question in SURVEY_QUESTIONS:
            value = answers.get(question)
            if value is not None and (type(value) is not int or not 1 <= value <= 5):
                raise OutcomeRejected("invalid-field", f"'{question}' is 1 to 5, or left out")
            values.append(value)
        unknown = set(answers) - set(SURVEY_QUESTIONS)
        if unknown:
            raise OutcomeRejected("invalid-field", f"unknown question(s) {sorted(unknown)}")
        triple = (values[0], values[1], values[2])
        now = time.time()
        await self.survey_store.record(visit, ParticipantId(seat.participant), triple, now)
        await self.events.append(
            VisitEvent(
                visit=visit,
                kind=EventKind.SURVEY_ANSWERED,
                participant=seat.participant,
                role=seat.role.value,
                sector=seat.sector.value,
                org=org,
                data=dict(zip(SURVEY_QUESTIONS, triple, strict=True)),
                time=now,
            )
        )
        return triple
