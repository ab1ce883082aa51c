"""What a visit did, derived for evaluators (MAST): pure functions over recorded facts, no I/O.

`summarize` turns the events of one visit (`rooms.eventlog`), its connection-quality samples
and its outcome and survey answers (`rooms.quality_log`) into a `VisitSummary`; `aggregate`
turns many summaries into a `Report`, after the caller has chosen them with `filter_summaries`.
Every input holds pseudonymous ids and codes only, and so does every output. Events are taken
in time order (ties in the order they were recorded); events of another visit are ignored.

Definitions of the fields of a `VisitSummary`:

- `kind`, `org`, `created_at`, `planned_start`: from the `visit-created` event (its `kind` and
  `planned_start` data, its org and time); None when absent.
- `state`: `cancelled` or `ended` after the first `visit-cancelled` or `visit-ended` event,
  `live` before. `ended_at` is that event's time; `end_reason` the `reason` of `visit-ended`
  (host, everyone-left, nobody-joined). Participant events after it are ignored.
- `started_at`: the first `participant-joined` (the first person in the call; the
  `visit-started` event, two in the call, is not used).
- `duration_seconds`: `ended_at - started_at` for an ended visit someone joined; None while
  live, for a cancelled visit and for one nobody joined.
- per participant (`ParticipantSummary`), everyone named by an event, in order of appearance:
  `invited` (a `participant-invited` event), `joined` (a `participant-joined`), `role` and
  `sector` (from the first event that gives them), `waiting_seconds` (the sum of the spans from
  `participant-waiting` to the next `participant-admitted`; None when never admitted from the
  waiting room: a decline or leaving the waiting room ends a span uncounted),
  `seconds_in_call` (the sum of the spans from `participant-joined` or
  `participant-reconnected` to the next `participant-left` or `participant-reconnecting`; a
  span still open is closed at the visit's end, or, while live, at the latest recorded time),
  `reconnects` (count of `participant-reconnected`), `removed` (a `participant-removed`),
  `first_joined_at` and `last_left_at` (end of the last span).
- `sectors_present`: the sorted sectors of the participants who joined.
- `assisted`: the citizen took part assisted by the nurse, by either of two rules:
  (1) a `citizen-assisted` event with `on` true (the nurse's "Borgeren sidder hos mig"; once on
  counts, even if switched off later); or (2) in a visit of kind `assisted`, a citizen seat's
  time in the call overlapped a nurse seat's.
- `no_shows`: the sorted roles of invited seats that never joined, one entry per seat; under
  rule (1) of `assisted` the citizen seats are not counted (the citizen was at the nurse's
  device).
- `fell_back_to_phone`: a `visit-fell-back-to-phone` event.
- `technical_failure`: true when any of these rules holds; `failure_reasons` lists the code of
  each rule that holds, in this order:
    (a) `media-failed`: a `media-failed` event (a participant's media connection failed).
    (b) `no-first-frame`: a participant joined, no `media-first-frame` with direction `up`
        (audio or video; a missing direction counts as up) of theirs arrived within
        `FIRST_FRAME_DEADLINE_SECONDS` (20 s) of their first `participant-joined`, and the
        visit went on for at least that long after the join (its end, or while live the latest
        recorded time, is at least 20 s after the join).
    (c) `no-media`: `NO_MEDIA_SAMPLES` (3) or more consecutive quality samples of one
        participant (their own samples in time order) each showing no media: bitrate up
        exactly 0, or level `poor` (`NO_MEDIA_LEVEL`; the level rule counts "nothing received
        while publishing" as poor). At the default 5 s sampling interval, 3 samples cover more
        than 10 s. A sample without a measured bitrate is not "0".
    (d) `ended-after-failure`: the visit ended (`visit-ended`, not cancelled) within
        `END_AFTER_FAILURE_SECONDS` (120 s) after a `media-failed` event, or after a
        `participant-reconnecting` that was unresolved (no `participant-reconnected` or
        `participant-joined` of that participant between it and the end).
    (e) `fell-back-to-phone`: the visit went on by phone.
- `quality`: over all samples of the visit (all participants), per measure (`rtt_ms`,
  `loss_up`, `loss_down`, `jitter_ms`, `bitrate_up_kbps`, `bitrate_down_kbps`, `fps_up`;
  unmeasured values are skipped): `median`; `p95`, the value 95 % of samples are at least as
  good as (the 95th percentile where higher is worse; for bitrate and frame rate, where lower
  is worse, the 5th percentile), by nearest rank; `worst`, the maximum (the minimum for bitrate
  and frame rate). Also how many samples there were at each level. Exports name the tail by
  what it is: `p95` for the first four measures, `p5` for bitrate and frame rate.
- `content_shared`: what was shown besides faces, never what it showed: per role and source
  (`screen`, `camera2`), the summed seconds from each `content-share-started` to the next
  `content-share-stopped` of that participant and source (a span still open is closed at the
  visit's end, or while live at the latest recorded time), and how many times it began.
- `outcome`: the code given to `summarize` (from the outcome store), else the `outcome` of the
  last `outcome-recorded` event; None when none was recorded. The clinician's note is never
  an input.
- `surveys`: every answer given (from the survey store when given, else from the
  `survey-answered` events); `experience`: the latest answer of a citizen seat (q1..q3, each
  1..5 or None) and the mean of its given answers; None when no citizen answered.

Definitions of the `Report` of `aggregate` (over the summaries given):

- `visits`, `states` (count per state) and `visits_per_week` (ISO week, e.g. `2025-W07`, of
  each visit's reference time in Danish time: `started_at`, else `planned_start`, else
  `created_at`).
- `held`: visits someone joined that were not cancelled; the denominator of
  `technical_failure_rate` (held visits with a technical failure / held) and of
  `fallback_rate` (held visits that went on by phone / held); None when no visit was held.
  `failure_reasons` counts each reason code over the held visits.
- `outcomes`: count per outcome code over all visits; `without_outcome`: held visits without.
- `assisted`, `no_shows` (count per role).
- `durations`: `duration_seconds` of the ended visits, in buckets (minutes) 0-5, 5-10, 10-15,
  15-20, 20-30, 30-45, 45-60, 60+; `waiting`: `waiting_seconds` of every participant admitted
  from the waiting room, in buckets 0-30 s, 30-60 s, 1-2, 2-5, 5-10, 10-15, 15+ min. Each
  bucket holds lower <= value < upper; each distribution also has its count, median and mean.
- `experience`: per question, the count of each answer 1..5, how many answered and the mean;
  `responses` (visits with a citizen's answer) and `mean` (the mean of those visits' means).
- `sectors`: per sector, the visits in which it was present; `sector_mix`: per combination of
  sectors present (joined by "+"), the number of visits.

`filter_summaries` keeps visits whose reference time is in [since, until), of the kind, of the
organisation, and with a participant (invited or joined) of the sector, for each filter given.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Final
from zoneinfo import ZoneInfo

from rooms.eventlog import EventKind, VisitEvent
from rooms.quality_log import QualityRecord, SurveyRecord

FIRST_FRAME_DEADLINE_SECONDS: Final = 20.0
NO_MEDIA_SAMPLES: Final = 3
NO_MEDIA_LEVEL: Final = "poor"
END_AFTER_FAILURE_SECONDS: Final = 120.0
DANISH_TIME: Final = ZoneInfo("Europe/Copenhagen")

REASON_MEDIA_FAILED: Final = "media-failed"
REASON_NO_FIRST_FRAME: Final = "no-first-frame"
REASON_NO_MEDIA: Final = "no-media"
REASON_ENDED_AFTER_FAILURE: Final = "ended-after-failure"
REASON_FELL_BACK_TO_PHONE: Final = "fell-back-to-phone"
FAILURE_REASONS: Final = (
    REASON_MEDIA_FAILED,
    REASON_NO_FIRST_FRAME,
    REASON_NO_MEDIA,
    REASON_ENDED_AFTER_FAILURE,
    REASON_FELL_BACK_TO_PHONE,
)

QUALITY_METRICS: Final = (
    "rtt_ms",
    "loss_up",
    "loss_down",
    "jitter_ms",
    "bitrate_up_kbps",
    "bitrate_down_kbps",
    "fps_up",
)
LOWER_IS_WORSE: Final = frozenset({"bitrate_up_kbps", "bitrate_down_kbps", "fps_up"})
SURVEY_QUESTIONS: Final = ("q1", "q2", "q3")

#: (label, lower, upper) in seconds; the last bucket is open-ended.
DURATION_BUCKETS: Final[tuple[tuple[str, float, float | None], ...]] = (
    ("0-5 min", 0, 300),
    ("5-10 min", 300, 600),
    ("10-15 min", 600, 900),
    ("15-20 min", 900, 1200),
    ("20-30 min", 1200, 1800),
    ("30-45 min", 1800, 2700),
    ("45-60 min", 2700, 3600),
    ("60+ min", 3600, None),
)
WAITING_BUCKETS: Final[tuple[tuple[str, float, float | None], ...]] = (
    ("0-30 s", 0, 30),
    ("30-60 s", 30, 60),
    ("1-2 min", 60, 120),
    ("2-5 min", 120, 300),
    ("5-10 min", 300, 600),
    ("10-15 min", 600, 900),
    ("15+ min", 900, None),
)

_TIME = attrgetter("time")
_SPAN_START = (EventKind.PARTICIPANT_JOINED, EventKind.PARTICIPANT_RECONNECTED)
_SPAN_END = (EventKind.PARTICIPANT_LEFT, EventKind.PARTICIPANT_RECONNECTING)
#: A tuple, most frequent first: membership by identity, where a set would hash each enum member.
_LIFECYCLE_KINDS = (
    EventKind.PARTICIPANT_JOINED,
    EventKind.PARTICIPANT_LEFT,
    EventKind.PARTICIPANT_WAITING,
    EventKind.PARTICIPANT_ADMITTED,
    EventKind.PARTICIPANT_DECLINED,
    EventKind.PARTICIPANT_RECONNECTING,
    EventKind.PARTICIPANT_RECONNECTED,
    EventKind.PARTICIPANT_REMOVED,
)


# --- one visit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParticipantSummary:
    participant: str
    role: str | None
    sector: str | None
    invited: bool
    joined: bool
    waiting_seconds: float | None
    seconds_in_call: float
    reconnects: int
    removed: bool
    first_joined_at: float | None = None
    last_left_at: float | None = None


@dataclass(frozen=True)
class MetricSummary:
    samples: int
    median: float | None
    p95: float | None
    worst: float | None


@dataclass(frozen=True)
class QualitySummary:
    samples: int
    levels: dict[str, int]
    metrics: dict[str, MetricSummary]


@dataclass(frozen=True)
class SurveyAnswer:
    participant: str
    role: str | None
    time: float
    q1: int | None
    q2: int | None
    q3: int | None


@dataclass(frozen=True)
class Experience:
    """The citizen's answers (1..5 or None each) and the mean of those given."""

    q1: int | None
    q2: int | None
    q3: int | None
    mean: float | None


@dataclass(frozen=True)
class SharedContent:
    """That a role showed a source, how often and for how long; never what it showed."""

    role: str
    source: str
    times: int
    seconds: float


@dataclass(frozen=True)
class VisitSummary:
    visit: str
    kind: str | None
    org: str | None
    created_at: float | None
    planned_start: float | None
    state: str  # "ended", "cancelled" or "live"
    started_at: float | None
    ended_at: float | None
    duration_seconds: float | None
    participants: list[ParticipantSummary]
    sectors_present: list[str]
    assisted: bool
    no_shows: list[str]
    fell_back_to_phone: bool
    technical_failure: bool
    failure_reasons: list[str]
    quality: QualitySummary
    outcome: str | None
    experience: Experience | None
    end_reason: str | None = None
    surveys: list[SurveyAnswer] = field(default_factory=list)
    content_shared: list[SharedContent] = field(default_factory=list)

    @property
    def reference_time(self) -> float | None:
        """When the visit happened, for weeks and filters: started, else planned, else created."""
        for value in (self.started_at, self.planned_start, self.created_at):
            if value is not None:
                return value
        return None

    @property
    def week(self) -> str | None:
        return iso_week(self.reference_time) if self.reference_time is not None else None

    @property
    def held(self) -> bool:
        """Someone joined, and the visit was not cancelled."""
        return self.state != "cancelled" and self.started_at is not None


def iso_week(t: float) -> str:
    """The ISO week of Unix time `t` in Danish time, as `YYYY-Www`."""
    year, week, _ = datetime.fromtimestamp(t, DANISH_TIME).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass
class _Track:
    """One participant while the events are read."""

    participant: str
    role: str | None = None
    sector: str | None = None
    invited: bool = False
    first_joined: float | None = None
    in_since: float | None = None
    spans: list[tuple[float, float]] = field(default_factory=list)
    waiting_since: float | None = None
    waited: float = 0.0
    admitted: bool = False
    reconnects: int = 0
    removed: bool = False

    def open_span(self, t: float) -> None:
        if self.in_since is None:
            self.in_since = t

    def close_span(self, t: float) -> None:
        if self.in_since is not None:
            self.spans.append((self.in_since, max(t, self.in_since)))
            self.in_since = None

    def summary(self) -> ParticipantSummary:
        return ParticipantSummary(
            participant=self.participant,
            role=self.role,
            sector=self.sector,
            invited=self.invited,
            joined=self.first_joined is not None,
            waiting_seconds=self.waited if self.admitted else None,
            seconds_in_call=sum(end - start for start, end in self.spans),
            reconnects=self.reconnects,
            removed=self.removed,
            first_joined_at=self.first_joined,
            last_left_at=self.spans[-1][1] if self.spans else None,
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _answer(value: object) -> int | None:
    return value if type(value) is int and 1 <= value <= 5 else None


@dataclass(frozen=True)
class SampleFacts:
    """All a summary takes from a visit's quality samples besides the quality figures: the
    latest sample's time (None without samples) and whether rule (c), `no-media`, holds."""

    last_time: float | None
    no_media: bool


#: A visit without samples.
NO_SAMPLES: Final = SampleFacts(None, False)
#: The quality of a summary made from `SampleFacts` alone (the report has no quality figures).
QUALITY_NOT_READ: Final = QualitySummary(0, {}, {})


def summarize(
    visit: str,
    events: Sequence[VisitEvent],
    quality: Sequence[QualityRecord] = (),
    outcome: str | None = None,
    surveys: Sequence[SurveyRecord] = (),
) -> VisitSummary:
    """The summary of visit `visit` (see the module docstring for every field's definition)."""
    samples = sorted((q for q in quality if q.visit == visit), key=lambda q: q.time)
    return _summarize(
        visit, events, sample_facts(samples), summarize_quality(samples), outcome, surveys
    )


def summarize_without_samples(
    visit: str,
    events: Sequence[VisitEvent],
    facts: SampleFacts,
    outcome: str | None = None,
    surveys: Sequence[SurveyRecord] = (),
) -> VisitSummary:
    """`summarize` given only the `SampleFacts` of the visit's samples: the same summary, but
    for its `quality` (`QUALITY_NOT_READ`). What the report reads, so that it need not read
    every sample."""
    return _summarize(visit, events, facts, QUALITY_NOT_READ, outcome, surveys)


def _summarize(
    visit: str,
    events: Sequence[VisitEvent],
    facts: SampleFacts,
    quality: QualitySummary,
    outcome: str | None,
    surveys: Sequence[SurveyRecord],
) -> VisitSummary:
    ordered = sorted([e for e in events if e.visit == visit], key=_TIME)
    times = [ordered[-1].time] if ordered else []  # the latest, as they are sorted
    if facts.last_time is not None:
        times.append(facts.last_time)
    last_known = max(times) if times else None

    created = next((e for e in ordered if e.kind is EventKind.VISIT_CREATED), None)
    created_data = created.data if created is not None else {}
    kind = created_data.get("kind")
    org = created.org if created is not None and created.org else None
    if org is None:
        org = next((e.org for e in ordered if e.org), None)

    tracks: dict[str, _Track] = {}
    state, ended_at, end_reason = "live", None, None
    started_at: float | None = None
    assisted_flag = False
    fell_back = False
    media_failed: list[float] = []
    reconnecting: list[tuple[str, float]] = []
    resolved: dict[str, list[float]] = {}
    first_frames_up: dict[str, list[float]] = {}
    last_outcome: str | None = None
    survey_events: list[SurveyAnswer] = []
    #: (participant, source) -> when the share began; (role, source) -> [times, seconds]
    share_open: dict[tuple[str, str], tuple[float, str]] = {}
    shared: dict[tuple[str, str], list[float]] = {}

    for event in ordered:
        track: _Track | None = None
        if event.participant is not None:
            track = tracks.get(event.participant)
            if track is None:
                track = tracks[event.participant] = _Track(event.participant)
            track.role = track.role or event.role
            track.sector = track.sector or event.sector
        k, t = event.kind, event.time
        if k is EventKind.OUTCOME_RECORDED:
            code = event.data.get("outcome")
            last_outcome = code if isinstance(code, str) else last_outcome
            continue
        if k is EventKind.SURVEY_ANSWERED and event.participant is not None:
            q1, q2, q3 = (_answer(event.data.get(q)) for q in SURVEY_QUESTIONS)
            survey_events.append(SurveyAnswer(event.participant, event.role, t, q1, q2, q3))
            continue
        if k is EventKind.VISIT_FELL_BACK_TO_PHONE:
            fell_back = True
            continue
        if state != "live":
            continue  # what happens after the end does not change the visit
        if k in _LIFECYCLE_KINDS:  # the most frequent kinds, tested first
            if track is not None:
                _lifecycle(track, k, t, reconnecting, resolved)
                if k is EventKind.PARTICIPANT_JOINED and started_at is None:
                    started_at = t
        elif k is EventKind.PARTICIPANT_INVITED:
            if track is not None:
                track.invited = True
        elif k in (EventKind.VISIT_ENDED, EventKind.VISIT_CANCELLED):
            state = "ended" if k is EventKind.VISIT_ENDED else "cancelled"
            ended_at = t
            reason = event.data.get("reason")
            end_reason = reason if k is EventKind.VISIT_ENDED and isinstance(reason, str) else None
            for open_track in tracks.values():
                open_track.close_span(t)
                open_track.waiting_since = None
        elif k is EventKind.MEDIA_FAILED:
            media_failed.append(t)
        elif k is EventKind.CONTENT_SHARE_STARTED and track is not None:
            source = str(event.data.get("source") or "unknown")
            share_open.setdefault((track.participant, source), (t, track.role or "unknown"))
        elif k is EventKind.CONTENT_SHARE_STOPPED and track is not None:
            source = str(event.data.get("source") or "unknown")
            began = share_open.pop((track.participant, source), None)
            if began is not None:
                _add_share(shared, began[1], source, t - began[0])
        elif k is EventKind.CITIZEN_ASSISTED:
            assisted_flag = assisted_flag or event.data.get("on") is True
        elif k is EventKind.MEDIA_FIRST_FRAME and track is not None:
            if event.data.get("direction", "up") == "up":
                first_frames_up.setdefault(track.participant, []).append(t)

    horizon = ended_at if ended_at is not None else last_known
    for (_participant, source), (began_at, role) in share_open.items():
        _add_share(shared, role, source, (horizon or began_at) - began_at)
    for open_track in tracks.values():
        if horizon is not None:
            open_track.close_span(horizon)

    participants = [track.summary() for track in tracks.values()]
    by_participant = {p.participant: p for p in participants}

    reasons: list[str] = []
    if media_failed:
        reasons.append(REASON_MEDIA_FAILED)
    if _no_first_frame(participants, first_frames_up, horizon):
        reasons.append(REASON_NO_FIRST_FRAME)
    if facts.no_media:
        reasons.append(REASON_NO_MEDIA)
    if state == "ended" and ended_at is not None:
        failures = media_failed + [
            t
            for participant, t in reconnecting
            if not any(t < r <= ended_at for r in resolved.get(participant, []))
        ]
        if any(0 <= ended_at - t <= END_AFTER_FAILURE_SECONDS for t in failures):
            reasons.append(REASON_ENDED_AFTER_FAILURE)
    if fell_back:
        reasons.append(REASON_FELL_BACK_TO_PHONE)

    answers = (
        [
            SurveyAnswer(
                s.participant,
                by_participant[s.participant].role if s.participant in by_participant else None,
                s.time,
                _answer(s.q1),
                _answer(s.q2),
                _answer(s.q3),
            )
            for s in sorted(surveys, key=lambda s: s.time)
            if s.visit == visit
        ]
        if surveys
        else survey_events
    )
    assisted = assisted_flag or (kind == "assisted" and _citizen_with_nurse(tracks.values()))
    no_shows = sorted(
        p.role or "unknown"
        for p in participants
        if p.invited and not p.joined and not (assisted_flag and p.role == "citizen")
    )
    duration = (
        max(0.0, ended_at - started_at)
        if state == "ended" and ended_at is not None and started_at is not None
        else None
    )
    return VisitSummary(
        visit=visit,
        kind=kind if isinstance(kind, str) else None,
        org=org,
        created_at=created.time if created is not None else None,
        planned_start=_number(created_data.get("planned_start")),
        state=state,
        started_at=started_at,
        ended_at=ended_at,
        duration_seconds=duration,
        participants=participants,
        sectors_present=sorted({p.sector for p in participants if p.joined and p.sector}),
        assisted=assisted,
        no_shows=no_shows,
        fell_back_to_phone=fell_back,
        technical_failure=bool(reasons),
        failure_reasons=reasons,
        quality=quality,
        outcome=outcome if outcome is not None else last_outcome,
        experience=_experience(answers),
        end_reason=end_reason,
        surveys=answers,
        content_shared=[
            SharedContent(role, source, int(times), round(seconds, 1))
            for (role, source), (times, seconds) in sorted(shared.items())
        ],
    )


def _add_share(
    shared: dict[tuple[str, str], list[float]], role: str, source: str, seconds: float
) -> None:
    entry = shared.setdefault((role, source), [0, 0.0])
    entry[0] += 1
    entry[1] += max(0.0, seconds)


def _lifecycle(
    track: _Track,
    k: EventKind,
    t: float,
    reconnecting: list[tuple[str, float]],
    resolved: dict[str, list[float]],
) -> None:
    if k is EventKind.PARTICIPANT_WAITING:
        if track.waiting_since is None:
            track.waiting_since = t
    elif k is EventKind.PARTICIPANT_ADMITTED:
        if track.waiting_since is not None:
            track.waited += t - track.waiting_since
            track.admitted = True
        track.waiting_since = None
    elif k is EventKind.PARTICIPANT_DECLINED:
        track.waiting_since = None
    elif k in _SPAN_START:
        track.waiting_since = None
        track.open_span(t)
        resolved.setdefault(track.participant, []).append(t)
        if k is EventKind.PARTICIPANT_JOINED and track.first_joined is None:
            track.first_joined = t
        if k is EventKind.PARTICIPANT_RECONNECTED:
            track.reconnects += 1
    elif k in _SPAN_END:
        track.waiting_since = None
        track.close_span(t)
        if k is EventKind.PARTICIPANT_RECONNECTING:
            reconnecting.append((track.participant, t))
    elif k is EventKind.PARTICIPANT_REMOVED:
        track.removed = True


def _no_first_frame(
    participants: Sequence[ParticipantSummary],
    first_frames_up: dict[str, list[float]],
    horizon: float | None,
) -> bool:
    """Rule (b)."""
    for p in participants:
        joined = p.first_joined_at
        if joined is None or horizon is None:
            continue
        deadline = joined + FIRST_FRAME_DEADLINE_SECONDS
        if horizon < deadline:
            continue  # the visit did not go on long enough to tell
        if not any(t <= deadline for t in first_frames_up.get(p.participant, [])):
            return True
    return False


def lacks_media(sample: QualityRecord) -> bool:
    """A sample that counts toward rule (c): bitrate up exactly 0, or level poor (the same
    test in SQL: `rooms.quality_log.SqlQualityLog.latest_and_lacking`)."""
    return sample.bitrate_up_kbps == 0 or sample.level == NO_MEDIA_LEVEL


def sample_facts(samples: Sequence[QualityRecord]) -> SampleFacts:
    """The `SampleFacts` of one visit's samples, given in time order."""
    return SampleFacts(samples[-1].time if samples else None, _no_media(samples))


def _no_media(samples: Sequence[QualityRecord]) -> bool:
    """Rule (c); `samples` are in time order."""
    runs: dict[str, int] = {}
    for sample in samples:
        run = runs.get(sample.participant, 0) + 1 if lacks_media(sample) else 0
        runs[sample.participant] = run
        if run >= NO_MEDIA_SAMPLES:
            return True
    return False


def _overlap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    return any(
        min(a_end, b_end) > max(a_start, b_start) for a_start, a_end in a for b_start, b_end in b
    )


def _citizen_with_nurse(tracks: Iterable[_Track]) -> bool:
    """Rule (2) of `assisted`: a citizen seat and a nurse seat were in the call together."""
    listed = list(tracks)
    citizens = [t.spans for t in listed if t.role == "citizen"]
    nurses = [t.spans for t in listed if t.role == "nurse"]
    return any(_overlap(c, n) for c in citizens for n in nurses)


def _experience(answers: Sequence[SurveyAnswer]) -> Experience | None:
    citizen = [a for a in answers if a.role == "citizen"]
    if not citizen:
        return None
    latest = max(citizen, key=lambda a: a.time)
    given = [v for v in (latest.q1, latest.q2, latest.q3) if v is not None]
    return Experience(latest.q1, latest.q2, latest.q3, statistics.fmean(given) if given else None)


def _nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _median_of_sorted(ordered: Sequence[float]) -> float:
    """`statistics.median` of a list already sorted (which would sort it again)."""
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summarize_quality(samples: Sequence[QualityRecord]) -> QualitySummary:
    """Median, p95 and worst per measure over `samples` (see the module docstring)."""
    metrics: dict[str, MetricSummary] = {}
    for name in QUALITY_METRICS:
        values = sorted(v for v in (getattr(s, name) for s in samples) if v is not None)
        if not values:
            metrics[name] = MetricSummary(0, None, None, None)
            continue
        lower_is_worse = name in LOWER_IS_WORSE
        metrics[name] = MetricSummary(
            samples=len(values),
            median=_median_of_sorted(values),
            p95=_nearest_rank(values, 0.05 if lower_is_worse else 0.95),
            worst=values[0] if lower_is_worse else values[-1],
        )
    levels = Counter(s.level for s in samples)
    return QualitySummary(len(samples), dict(sorted(levels.items())), metrics)


# --- many visits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    label: str
    lower: float
    upper: float | None  # None: open-ended
    count: int


@dataclass(frozen=True)
class Distribution:
    count: int
    median: float | None
    mean: float | None
    buckets: list[Bucket]


@dataclass(frozen=True)
class QuestionStats:
    answered: int
    mean: float | None
    counts: dict[int, int]  # answer 1..5 -> how many


@dataclass(frozen=True)
class ExperienceStats:
    responses: int
    mean: float | None
    questions: dict[str, QuestionStats]


@dataclass(frozen=True)
class Report:
    visits: int
    states: dict[str, int]
    visits_per_week: dict[str, int]
    held: int
    outcomes: dict[str, int]
    without_outcome: int
    technical_failures: int
    technical_failure_rate: float | None
    failure_reasons: dict[str, int]
    fallbacks: int
    fallback_rate: float | None
    assisted: int
    no_shows: dict[str, int]
    durations: Distribution
    waiting: Distribution
    experience: ExperienceStats
    sectors: dict[str, int]
    sector_mix: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (answer counts keyed by "1".."5")."""
        data = asdict(self)
        for question in data["experience"]["questions"].values():
            question["counts"] = {str(k): v for k, v in question["counts"].items()}
        return data


def distribution(
    values: Sequence[float], buckets: Sequence[tuple[str, float, float | None]]
) -> Distribution:
    counted = [
        Bucket(
            label,
            lower,
            upper,
            sum(1 for v in values if v >= lower and (upper is None or v < upper)),
        )
        for label, lower, upper in buckets
    ]
    return Distribution(
        count=len(values),
        median=statistics.median(values) if values else None,
        mean=statistics.fmean(values) if values else None,
        buckets=counted,
    )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _sorted_counts(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items()))


def aggregate(summaries: Sequence[VisitSummary]) -> Report:
    """The figures over `summaries` (see the module docstring for each)."""
    held = [s for s in summaries if s.held]
    failed = [s for s in held if s.technical_failure]
    fallbacks = [s for s in held if s.fell_back_to_phone]
    experiences = [s.experience for s in summaries if s.experience is not None]
    questions: dict[str, QuestionStats] = {}
    for index, question in enumerate(SURVEY_QUESTIONS):
        given = [v for e in experiences if (v := (e.q1, e.q2, e.q3)[index]) is not None]
        questions[question] = QuestionStats(
            answered=len(given),
            mean=statistics.fmean(given) if given else None,
            counts={score: given.count(score) for score in range(1, 6)},
        )
    means = [e.mean for e in experiences if e.mean is not None]
    return Report(
        visits=len(summaries),
        states=_sorted_counts(Counter(s.state for s in summaries)),
        visits_per_week=_sorted_counts(Counter(w for s in summaries if (w := s.week))),
        held=len(held),
        outcomes=_sorted_counts(Counter(s.outcome for s in summaries if s.outcome)),
        without_outcome=sum(1 for s in held if not s.outcome),
        technical_failures=len(failed),
        technical_failure_rate=_rate(len(failed), len(held)),
        failure_reasons=_sorted_counts(Counter(r for s in held for r in s.failure_reasons)),
        fallbacks=len(fallbacks),
        fallback_rate=_rate(len(fallbacks), len(held)),
        assisted=sum(1 for s in summaries if s.assisted),
        no_shows=_sorted_counts(Counter(role for s in summaries for role in s.no_shows)),
        durations=distribution(
            [s.duration_seconds for s in summaries if s.duration_seconds is not None],
            DURATION_BUCKETS,
        ),
        waiting=distribution(
            [
                p.waiting_seconds
                for s in summaries
                for p in s.participants
                if p.waiting_seconds is not None
            ],
            WAITING_BUCKETS,
        ),
        experience=ExperienceStats(
            responses=len(experiences),
            mean=statistics.fmean(means) if means else None,
            questions=questions,
        ),
        sectors=_sorted_counts(Counter(x for s in summaries for x in s.sectors_present)),
        sector_mix=_sorted_counts(
            Counter("+".join(s.sectors_present) for s in summaries if s.sectors_present)
        ),
    )


def filter_summaries(
    summaries: Iterable[VisitSummary],
    since: float | None = None,
    until: float | None = None,
    kind: str | None = None,
    sector: str | None = None,
    org: str | None = None,
) -> list[VisitSummary]:
    """The summaries that pass every filter given: reference time in [since, until), kind, org,
    and a participant (invited or joined) of `sector`."""
    kept = []
    for s in summaries:
        at = s.reference_time
        if since is not None and (at is None or at < since):
            continue
        if until is not None and (at is None or at >= until):
            continue
        if kind is not None and s.kind != kind:
            continue
        if org is not None and s.org != org:
            continue
        if sector is not None and all(p.sector != sector for p in s.participants):
            continue
        kept.append(s)
    return kept
