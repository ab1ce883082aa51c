"""The report reads each visit's quality samples as their facts only (the latest sample's time,
and rule (c) from one aggregated row per participant), and gets the same summaries, but for their
quality figures, and the same report as from every sample (both backends).

Random histories of every event kind, with runs of samples that lack media (some long enough
for rule (c), some one short, some broken by a good sample), visits still live whose samples
go on after their last event, and ties in time."""

from __future__ import annotations

import random
from dataclasses import replace

from rooms.evaluation import (
    NO_MEDIA_LEVEL,
    QUALITY_NOT_READ,
    REASON_NO_FIRST_FRAME,
    REASON_NO_MEDIA,
    aggregate,
)
from rooms.eventlog import EventKind, SqlEventLog, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.quality_log import OutcomeStore, QualityRecord, SqlQualityLog, SurveyStore
from rooms.sql import Database
from server.reports import Filters, gather
from tests.sqlbackends import backend, database  # noqa: F401

ORG = "region-test"
T0 = 1_780_000_000.0
SEATS = (
    ("citizen", "citizen"),
    ("nurse", "municipality"),
    ("gp", "general-practice"),
    ("specialist", "region"),
)
PARTICIPANT_KINDS = (
    EventKind.PARTICIPANT_INVITED,
    EventKind.PARTICIPANT_WAITING,
    EventKind.PARTICIPANT_ADMITTED,
    EventKind.PARTICIPANT_DECLINED,
    EventKind.PARTICIPANT_JOINED,
    EventKind.PARTICIPANT_JOINED,
    EventKind.PARTICIPANT_LEFT,
    EventKind.PARTICIPANT_RECONNECTING,
    EventKind.PARTICIPANT_RECONNECTED,
    EventKind.PARTICIPANT_REMOVED,
    EventKind.MEDIA_FIRST_FRAME,
    EventKind.MEDIA_FAILED,
    EventKind.SURVEY_ANSWERED,
)


def history(
    rng: random.Random, visit: str
) -> tuple[list[VisitEvent], list[QualityRecord], str | None, list[tuple[str, int, float]]]:
    """One visit's events, samples, outcome and survey answers."""
    events: list[VisitEvent] = []
    t = T0 + rng.uniform(0, 20 * 86400)

    def add(what: EventKind, at: float, seat: int | None = None, **data: object) -> None:
        role, sector = SEATS[seat] if seat is not None else (None, None)
        person = ParticipantId(f"{visit}-p{seat}") if seat is not None else None
        events.append(VisitEvent(VisitId(visit), what, person, role, sector, ORG, data, at))

    kind = rng.choice(["assisted", "video", "assisted"])
    if rng.random() < 0.3:
        add(EventKind.VISIT_CREATED, t, kind=kind, planned_start=t + 3600)
    else:
        add(EventKind.VISIT_CREATED, t, kind=kind)
    seats = rng.sample(range(len(SEATS)), rng.randint(1, len(SEATS)))
    for _ in range(rng.randint(0, 25)):
        # A tie with the previous event now and then.
        t += 0 if rng.random() < 0.15 else rng.uniform(0.5, 90)
        seat = rng.choice(seats)
        kind = rng.choice(PARTICIPANT_KINDS)
        if kind is EventKind.MEDIA_FIRST_FRAME:
            add(kind, t, seat, direction=rng.choice(["up", "down", "up"]))
        elif kind is EventKind.SURVEY_ANSWERED:
            add(kind, t, seat, q1=rng.randint(1, 5), q2=rng.choice([None, 3, 6]), q3=2)
        elif rng.random() < 0.05:
            add(EventKind.CITIZEN_ASSISTED, t, seat, on=rng.random() < 0.7)
        elif rng.random() < 0.04:
            add(EventKind.VISIT_FELL_BACK_TO_PHONE, t)
        else:
            add(kind, t, seat)
    last_event = t
    ending = rng.random()
    if ending < 0.6:
        t += rng.uniform(0, 200)
        add(EventKind.VISIT_ENDED, t, reason=rng.choice(["host", "everyone-left"]))
    elif ending < 0.7:
        add(EventKind.VISIT_CANCELLED, t + 1)
    if rng.random() < 0.2:
        add(EventKind.OUTCOME_RECORDED, t + 5, outcome="handled-remotely")

    samples: list[QualityRecord] = []
    # Live visits' samples may go on well after their last event (their horizon).
    at = last_event - rng.uniform(0, 300)
    horizon = last_event + (rng.uniform(0, 400) if ending >= 0.6 else 0)
    while at < horizon and len(samples) < 40:
        seat = rng.choice(seats)
        role, sector = SEATS[seat]
        run = rng.choice([1, 1, 2, 3, 4])  # a run of alike samples from one participant
        lacking = rng.random() < 0.35
        for _ in range(run):
            at += 0 if rng.random() < 0.1 else rng.uniform(0.5, 6)
            poor = lacking and rng.random() < 0.5
            samples.append(
                QualityRecord(
                    time=at,
                    visit=visit,
                    participant=f"{visit}-p{seat}",
                    role=role,
                    sector=sector,
                    level=NO_MEDIA_LEVEL if poor else rng.choice(["good", "fair"]),
                    rtt_ms=rng.choice([None, 30.0, 80.0]),
                    bitrate_up_kbps=0.0 if lacking and not poor else rng.choice([None, 800.0]),
                    fps_up=rng.choice([None, 25.0]),
                )
            )
    outcome = rng.choice([None, None, "physical-visit-needed"])
    answers = [(f"{visit}-p{seats[0]}", rng.randint(1, 5), t + 9)] if rng.random() < 0.3 else []
    return events, samples, outcome, answers


async def record(db: Database, visits: int, seed: int) -> None:
    rng = random.Random(seed)
    log, quality = SqlEventLog(db), SqlQualityLog(db)
    outcomes, surveys = OutcomeStore(db), SurveyStore(db)
    for n in range(visits):
        visit = f"visit-{n:03d}"
        events, samples, outcome, answers = history(rng, visit)
        for event in events:
            await log.append(event)
        await quality.record_many(samples)
        if outcome is not None:
            await outcomes.record(visit, outcome, None, events[-1].time + 10)
        for participant, q1, at in answers:
            await surveys.record(visit, participant, (q1, None, 4), at)


async def test_the_report_from_the_samples_facts_is_the_report_from_every_sample(
    database: Database,  # noqa: F811
) -> None:
    await record(database, 90, seed=18)
    events = SqlEventLog(database)
    every_sample = await gather(database, events, ORG, Filters(), samples=True)
    facts_only = await gather(database, events, ORG, Filters(), samples=False)
    assert len(every_sample) == len(facts_only) == 90
    for full, light in zip(every_sample, facts_only, strict=True):
        assert light == replace(full, quality=QUALITY_NOT_READ), full.visit
    assert aggregate(facts_only) == aggregate(every_sample)
    # The histories reach the rules the facts stand in for, both ways.
    reasons = [s.failure_reasons for s in every_sample]
    assert 5 <= sum(REASON_NO_MEDIA in r for r in reasons) <= 85
    assert sum(REASON_NO_FIRST_FRAME in r for r in reasons) >= 5
    live = [s for s in every_sample if s.state == "live"]
    assert live and any(p.seconds_in_call for s in live for p in s.participants)
    assert sum(s.quality.samples for s in every_sample) > 500
    # A period in SQL gives the same, too.
    period = Filters(since=T0 + 5 * 86400, until=T0 + 12 * 86400)
    week_full = await gather(database, events, ORG, period, samples=True)
    week_light = await gather(database, events, ORG, period, samples=False)
    assert 0 < len(week_light) < 90
    assert aggregate(week_light) == aggregate(week_full)
