"""Evaluation data for evaluators: summaries of their organisation's visits, the aggregated
report, and exports (CSV, JSON, FHIR R4), all pseudonymous. One path for the API, the report
page and `screenvisit report export`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rooms.evaluation import VisitSummary, filter_summaries
from rooms.eventlog import EventLog
from rooms.exports import (
    Pseudonymizer,
    collect_summaries,
    fhir_json,
    participants_csv,
    visits_csv,
    visits_json,
)
from rooms.private_files import private_dir, private_file
from rooms.quality_log import OutcomeStore, SqlQualityLog, SurveyStore
from rooms.sql import Database

#: format -> (render, content type, file name)
EXPORTS: dict[str, tuple[Callable[[Sequence[VisitSummary], Pseudonymizer], str], str, str]] = {
    "csv": (visits_csv, "text/csv", "screenvisit-visits.csv"),
    "participants-csv": (participants_csv, "text/csv", "screenvisit-participants.csv"),
    "json": (visits_json, "application/json", "screenvisit-visits.json"),
    "fhir": (fhir_json, "application/fhir+json", "screenvisit-fhir-bundle.json"),
}


def load_pseudonymizer(data_dir: Path) -> Pseudonymizer:
    """The deployment's pseudonym key, created on first use. Blocking: call from a thread.

    Exports made with the same key join across formats and over time; a new key (a new data
    folder) makes new pseudonyms."""
    path = data_dir / "evaluation-key"
    private_dir(data_dir)
    private_file(path)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return Pseudonymizer(path.read_bytes())


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    until: float | None = None
    kind: str | None = None
    sector: str | None = None


async def gather(db: Database, events: EventLog, org: str, filters: Filters) -> list[VisitSummary]:
    """Summaries of `org`'s visits that pass `filters`."""
    visits = await events.visits_created(org=org)
    summaries = await collect_summaries(
        visits, events, SqlQualityLog(db), OutcomeStore(db), SurveyStore(db)
    )
    return filter_summaries(
        summaries, filters.since, filters.until, filters.kind, filters.sector, org
    )
