"""Evaluation figures from hand-built event sequences with controlled times."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rooms.evaluation import (
    END_AFTER_FAILURE_SECONDS,
    FIRST_FRAME_DEADLINE_SECONDS,
    NO_MEDIA_SAMPLES,
    ParticipantSummary,
    VisitSummary,
    aggregate,
    filter_summaries,
    iso_week,
    summarize,
)
from rooms.eventlog import EventKind, VisitEvent
from rooms.ids import ParticipantId, VisitId
from rooms.quality_log import QualityRecord, SurveyRecord

V = "v-scripted"
T0 = 1_739_174_400.0  # Monday 2025-02-10 08:00 UTC (09:00 in Denmark): ISO week 2025-W07

SEATS = {
    "p-cit": ("citizen", "citizen"),
    "p-nur": ("nurse", "municipality"),
    "p-gp": ("gp", "general-practice"),
    "p-rel": ("relative", "citizen"),
}


def ev(what: EventKind, t: float, participant: str | None = None, **data: object) -> VisitEvent:
    """An event `t` seconds after T0; `data` may hold a `kind` (of visit-created)."""
    role, sector = SEATS[participant] if participant else ("gp", "general-practice")
    return VisitEvent(
        visit=VisitId(V),
        kind=what,
        participant=ParticipantId(participant) if participant else None,
        role=role,
        sector=sector,
        org="kommune-851",
        data=dict(data),
        time=T0 + t,
    )


def created(kind: str = "consultation") -> list[VisitEvent]:
    return [
        ev(EventKind.VISIT_CREATED, 0, kind=kind, seats=4, planned_start=T0 + 60),
        *(ev(EventKind.PARTICIPANT_INVITED, 1, p) for p in SEATS),
    ]


def joined(p: str, t: float, frame: bool = True) -> list[VisitEvent]:
    events = [ev(EventKind.PARTICIPANT_JOINED, t, p)]
    if frame:
        events.append(ev(EventKind.MEDIA_FIRST_FRAME, t + 2, p, media="video", direction="up"))
        events.append(ev(EventKind.MEDIA_FIRST_FRAME, t + 3, p, media="video", direction="down"))
    return events


def clean_visit() -> list[VisitEvent]:
    """gp hosts; the citizen and the nurse wait and are let in; the relative never comes."""
    return [
        *created(),
        *joined("p-gp", 100),
        ev(EventKind.VISIT_OPENED, 100),
        ev(EventKind.PARTICIPANT_WAITING, 110, "p-cit"),
        ev(EventKind.PARTICIPANT_ADMITTED, 140, "p-cit"),
        *joined("p-cit", 140),
        ev(EventKind.VISIT_STARTED, 140),
        ev(EventKind.PARTICIPANT_WAITING, 150, "p-nur"),
        ev(EventKind.PARTICIPANT_ADMITTED, 155, "p-nur"),
        *joined("p-nur", 155),
        ev(EventKind.PARTICIPANT_RECONNECTING, 400, "p-cit"),
        ev(EventKind.PARTICIPANT_RECONNECTED, 410, "p-cit"),
        ev(EventKind.PARTICIPANT_LEFT, 700, "p-nur", reason="left"),
        ev(EventKind.OUTCOME_RECORDED, 900, "p-gp", outcome="handled-remotely"),
        ev(EventKind.VISIT_ENDED, 1000, reason="host"),
        # After the end: sockets closing, and the citizen's survey.
        ev(EventKind.PARTICIPANT_LEFT, 1001, "p-cit", reason="left"),
        ev(EventKind.SURVEY_ANSWERED, 1100, "p-cit", q1=5, q2=4, q3=None),
    ]


def q(
    t: float,
    participant: str = "p-cit",
    level: str = "good",
    bitrate_up: float | None = 800.0,
    **values: float | None,
) -> QualityRecord:
    role, sector = SEATS[participant]
    return QualityRecord(
        time=T0 + t,
        visit=V,
        participant=participant,
        role=role,
        sector=sector,
        level=level,
        bitrate_up_kbps=bitrate_up,
        **values,
    )


def participant(summary: VisitSummary, p: str) -> ParticipantSummary:
    return next(x for x in summary.participants if x.participant == p)


# --- one visit --------------------------------------------------------------------------------


def test_scripted_visit_yields_the_expected_figures() -> None:
    s = summarize(V, clean_visit())
    assert s.visit == V and s.kind == "consultation" and s.org == "kommune-851"
    assert s.created_at == T0 and s.planned_start == T0 + 60
    assert s.state == "ended" and s.end_reason == "host"
    assert s.started_at == T0 + 100 and s.ended_at == T0 + 1000
    assert s.duration_seconds == pytest.approx(900, abs=0.01)
    assert s.week == "2025-W07" and s.reference_time == T0 + 100

    gp, cit, nur, rel = (participant(s, p) for p in ("p-gp", "p-cit", "p-nur", "p-rel"))
    assert [p.participant for p in s.participants] == ["p-cit", "p-nur", "p-gp", "p-rel"]
    assert gp.waiting_seconds is None and gp.seconds_in_call == pytest.approx(900)
    assert cit.waiting_seconds == pytest.approx(30)
    assert cit.seconds_in_call == pytest.approx((400 - 140) + (1000 - 410))
    assert cit.reconnects == 1 and not cit.removed
    assert cit.first_joined_at == T0 + 140 and cit.last_left_at == T0 + 1000
    assert nur.waiting_seconds == pytest.approx(5)
    assert nur.seconds_in_call == pytest.approx(545)
    assert (nur.role, nur.sector, nur.invited, nur.joined) == ("nurse", "municipality", True, True)
    assert rel.invited and not rel.joined and rel.seconds_in_call == 0

    assert s.no_shows == ["relative"]
    assert s.sectors_present == ["citizen", "general-practice", "municipality"]
    assert not s.assisted and not s.fell_back_to_phone
    assert not s.technical_failure and s.failure_reasons == []
    assert s.outcome == "handled-remotely"
    assert s.experience is not None
    assert (s.experience.q1, s.experience.q2, s.experience.q3) == (5, 4, None)
    assert s.experience.mean == pytest.approx(4.5)
    assert s.quality.samples == 0 and s.quality.metrics["rtt_ms"].median is None


def test_events_of_other_visits_and_order_of_arrival_do_not_matter() -> None:
    events = clean_visit()
    stranger = replace(events[5], visit=VisitId("v-other"), time=T0 + 5000)
    # Recorded out of time order (ties keep the order they were recorded in).
    end = next(e for e in events if e.kind is EventKind.VISIT_ENDED)
    shuffled = [end, stranger, *(e for e in events if e is not end)]
    assert summarize(V, shuffled) == summarize(V, events)


def test_the_stores_outcome_and_surveys_win_over_the_events() -> None:
    surveys = [
        SurveyRecord(T0 + 1200, V, "p-cit", 2, 2, 1),
        SurveyRecord(T0 + 1150, V, "p-cit", 5, 5, 5),
        SurveyRecord(T0 + 1300, V, "p-gp", 1, 1, 1),  # not the citizen's: no experience
        SurveyRecord(T0 + 1400, "v-other", "p-cit", 1, 1, 1),
    ]
    s = summarize(V, clean_visit(), outcome="referred-to-hospital", surveys=surveys)
    assert s.outcome == "referred-to-hospital"
    assert s.experience is not None
    assert (s.experience.q1, s.experience.q2, s.experience.q3) == (2, 2, 1)
    assert s.experience.mean == pytest.approx(5 / 3)
    assert [(a.participant, a.role) for a in s.surveys] == [
        ("p-cit", "citizen"),
        ("p-cit", "citizen"),
        ("p-gp", "gp"),
    ]


def test_quality_summary_median_p95_and_worst() -> None:
    samples = [
        q(
            200 + n,
            rtt_ms=float(10 * n),
            loss_up=n / 100,
            fps_up=float(30 - n),
            bitrate_up=100.0 * n,
        )
        for n in range(1, 21)
    ]
    samples.append(q(300, "p-gp", level="fair", rtt_ms=None, bitrate_up=None))
    s = summarize(V, clean_visit(), samples)
    assert s.quality.samples == 21 and s.quality.levels == {"fair": 1, "good": 20}
    rtt = s.quality.metrics["rtt_ms"]
    assert (rtt.samples, rtt.median, rtt.p95, rtt.worst) == (20, 105.0, 190.0, 200.0)
    assert s.quality.metrics["loss_up"].worst == pytest.approx(0.2)
    bitrate = s.quality.metrics["bitrate_up_kbps"]
    # Lower is worse: p95 is the 5th percentile, worst the minimum.
    assert (bitrate.p95, bitrate.worst) == (100.0, 100.0)
    fps = s.quality.metrics["fps_up"]
    assert (fps.median, fps.p95, fps.worst) == (19.5, 10.0, 10.0)
    assert s.quality.metrics["jitter_ms"].samples == 0


def test_a_live_visit_has_no_duration_and_counts_time_so_far() -> None:
    events = [e for e in clean_visit() if e.time < T0 + 600]
    s = summarize(V, events)
    assert s.state == "live" and s.ended_at is None and s.duration_seconds is None
    # Open spans are closed at the latest recorded time (the reconnect at 410).
    assert participant(s, "p-gp").seconds_in_call == pytest.approx(310)
    s = summarize(V, events, [q(590)])
    assert participant(s, "p-gp").seconds_in_call == pytest.approx(490)
    assert not s.technical_failure


def test_a_cancelled_visit_nobody_joined() -> None:
    s = summarize(V, [*created(), ev(EventKind.VISIT_CANCELLED, 50)])
    assert s.state == "cancelled" and s.ended_at == T0 + 50
    assert s.started_at is None and s.duration_seconds is None and not s.held
    assert s.no_shows == ["citizen", "gp", "nurse", "relative"]
    assert s.sectors_present == [] and not s.technical_failure
    assert s.reference_time == T0 + 60  # planned start


def test_declined_and_removed_participants() -> None:
    events = [
        *created(),
        *joined("p-gp", 100),
        ev(EventKind.PARTICIPANT_WAITING, 110, "p-rel"),
        ev(EventKind.PARTICIPANT_DECLINED, 120, "p-rel"),
        ev(EventKind.PARTICIPANT_WAITING, 130, "p-cit"),
        ev(EventKind.PARTICIPANT_LEFT, 140, "p-cit", reason="left-waiting-room"),
        ev(EventKind.PARTICIPANT_WAITING, 150, "p-cit"),
        ev(EventKind.PARTICIPANT_ADMITTED, 170, "p-cit"),
        *joined("p-cit", 170),
        ev(EventKind.PARTICIPANT_REMOVED, 300, "p-cit"),
        ev(EventKind.PARTICIPANT_LEFT, 300, "p-cit", reason="removed"),
        ev(EventKind.VISIT_ENDED, 400, reason="host"),
    ]
    s = summarize(V, events)
    rel, cit = participant(s, "p-rel"), participant(s, "p-cit")
    assert rel.waiting_seconds is None and not rel.joined
    # Only the wait that ended in admission counts.
    assert cit.waiting_seconds == pytest.approx(20)
    assert cit.removed and cit.seconds_in_call == pytest.approx(130)
    assert s.no_shows == ["nurse", "relative"]


def test_assisted_by_the_nurses_switch() -> None:
    events = [
        *created("assisted"),
        *joined("p-nur", 100),
        ev(EventKind.CITIZEN_ASSISTED, 101, "p-nur", on=True),
        *joined("p-gp", 120),
        ev(EventKind.CITIZEN_ASSISTED, 500, "p-nur", on=False),
        ev(EventKind.VISIT_ENDED, 600, reason="host"),
    ]
    s = summarize(V, events)
    assert s.assisted
    # The citizen sat with the nurse: their own seat unused is no no-show.
    assert s.no_shows == ["relative"]
    assert s.sectors_present == ["general-practice", "municipality"]


def test_assisted_by_citizen_and_nurse_in_the_call_together() -> None:
    together = [
        *created("assisted"),
        *joined("p-nur", 100),
        *joined("p-cit", 110),
        ev(EventKind.VISIT_ENDED, 600, reason="host"),
    ]
    assert summarize(V, together).assisted
    # A consultation is not assisted, even with both there.
    consultation = [replace(together[0], data={"kind": "consultation"}), *together[1:]]
    assert not summarize(V, consultation).assisted
    # Never at the same time: not assisted.
    apart = [
        *created("assisted"),
        *joined("p-cit", 100),
        ev(EventKind.PARTICIPANT_LEFT, 200, "p-cit", reason="left"),
        *joined("p-nur", 300),
        ev(EventKind.VISIT_ENDED, 600, reason="host"),
    ]
    s = summarize(V, apart)
    assert not s.assisted and "citizen" not in s.no_shows
    switched_off = [*apart[:-1], ev(EventKind.CITIZEN_ASSISTED, 310, "p-nur", on=False)]
    assert not summarize(V, [*switched_off, apart[-1]]).assisted


# --- the technical-failure rule ---------------------------------------------------------------


def failure_reasons(
    events: list[VisitEvent], samples: list[QualityRecord] | None = None
) -> list[str]:
    s = summarize(V, events, samples or [])
    assert s.technical_failure == bool(s.failure_reasons)
    return s.failure_reasons


def ended_at(events: list[VisitEvent], t: float) -> list[VisitEvent]:
    """`events` with the visit's end (and anything after it) moved to `t`."""
    end = next(i for i, e in enumerate(events) if e.kind is EventKind.VISIT_ENDED)
    return [*events[:end], replace(events[end], time=T0 + t)]


def test_a_clean_visit_is_no_technical_failure() -> None:
    samples = [q(200 + 5 * n, p, bitrate_up=700.0) for n in range(10) for p in ("p-cit", "p-gp")]
    assert failure_reasons(clean_visit(), samples) == []


def test_rule_a_media_failed() -> None:
    events = [*clean_visit(), ev(EventKind.MEDIA_FAILED, 500, "p-nur", state="failed")]
    assert failure_reasons(events) == ["media-failed"]


def test_rule_b_no_first_frame_within_the_deadline() -> None:
    nurse_frame = [
        e
        for e in clean_visit()
        if not (e.kind is EventKind.MEDIA_FIRST_FRAME and e.participant == "p-nur")
    ]
    assert failure_reasons(nurse_frame) == ["no-first-frame"]
    # Only frames going down to the nurse: still nothing from her.
    down_only = [*nurse_frame, ev(EventKind.MEDIA_FIRST_FRAME, 160, "p-nur", direction="down")]
    assert failure_reasons(down_only) == ["no-first-frame"]
    # A frame after the deadline is too late; one at the deadline is in time.
    late = FIRST_FRAME_DEADLINE_SECONDS + 1
    assert failure_reasons(
        [*nurse_frame, ev(EventKind.MEDIA_FIRST_FRAME, 155 + late, "p-nur", direction="up")]
    ) == ["no-first-frame"]
    in_time = FIRST_FRAME_DEADLINE_SECONDS
    assert (
        failure_reasons(
            [*nurse_frame, ev(EventKind.MEDIA_FIRST_FRAME, 155 + in_time, "p-nur", media="audio")]
        )
        == []
    )


def test_rule_b_needs_the_visit_to_go_on_long_enough() -> None:
    events = [
        *created(),
        *joined("p-gp", 100),
        *joined("p-cit", 990, frame=False),
        ev(EventKind.VISIT_ENDED, 1000, reason="host"),
    ]
    assert failure_reasons(events) == []
    assert failure_reasons(ended_at(events, 990 + FIRST_FRAME_DEADLINE_SECONDS)) == [
        "no-first-frame"
    ]


def test_rule_c_consecutive_samples_without_media() -> None:
    good = [q(200 + 5 * n) for n in range(3)]
    silent = [q(300 + 5 * n, bitrate_up=0.0) for n in range(NO_MEDIA_SAMPLES)]
    assert failure_reasons(clean_visit(), [*good, *silent]) == ["no-media"]
    poor = [q(300 + 5 * n, "p-gp", level="poor") for n in range(NO_MEDIA_SAMPLES)]
    assert failure_reasons(clean_visit(), [*good, *poor]) == ["no-media"]
    # One short of the run, broken by a good sample, then one short again: no failure.
    short = NO_MEDIA_SAMPLES - 1
    broken = [
        *(q(300 + 5 * n, bitrate_up=0.0) for n in range(short)),
        q(320),
        *(q(330 + 5 * n, bitrate_up=0.0) for n in range(short)),
    ]
    assert failure_reasons(clean_visit(), broken) == []
    # Runs of different participants do not add up.
    interleaved = [
        q(300 + 5 * n, ["p-cit", "p-gp"][n % 2], bitrate_up=0.0) for n in range(2 * short)
    ]
    assert failure_reasons(clean_visit(), interleaved) == []
    # An unmeasured bitrate is not zero.
    unknown = [q(300 + 5 * n, bitrate_up=None) for n in range(NO_MEDIA_SAMPLES)]
    assert failure_reasons(clean_visit(), unknown) == []


def test_rule_d_ended_soon_after_a_failure_or_a_lost_connection() -> None:
    base = clean_visit()
    lost = [*base, ev(EventKind.PARTICIPANT_RECONNECTING, 950, "p-gp")]
    assert failure_reasons(lost) == ["ended-after-failure"]
    # Resolved: the participant came back before the end.
    back = [*lost, ev(EventKind.PARTICIPANT_RECONNECTED, 960, "p-gp")]
    assert failure_reasons(back) == []
    # Long before the end: not rule (d).
    early = 1000 - END_AFTER_FAILURE_SECONDS - 1
    assert failure_reasons([*base, ev(EventKind.PARTICIPANT_RECONNECTING, early, "p-gp")]) == []
    failed = [*base, ev(EventKind.MEDIA_FAILED, 1000 - END_AFTER_FAILURE_SECONDS, "p-gp")]
    assert failure_reasons(failed) == ["media-failed", "ended-after-failure"]
    # A cancelled visit is not "ended".
    cancelled = [
        *created(),
        *joined("p-gp", 100),
        ev(EventKind.PARTICIPANT_RECONNECTING, 150, "p-gp"),
        ev(EventKind.VISIT_CANCELLED, 200),
    ]
    assert failure_reasons(cancelled) == []


def test_rule_e_fell_back_to_phone() -> None:
    events = [*clean_visit(), ev(EventKind.VISIT_FELL_BACK_TO_PHONE, 800, "p-gp")]
    s = summarize(V, events)
    assert s.fell_back_to_phone and s.failure_reasons == ["fell-back-to-phone"]


# --- many visits ------------------------------------------------------------------------------


def a_week_later(events: list[VisitEvent], visit: str, days: float = 7) -> list[VisitEvent]:
    """`events` as visit `visit`, `days` later (the planned start too)."""
    shift = days * 86400
    moved = []
    for e in events:
        data = dict(e.data)
        planned = data.get("planned_start")
        if isinstance(planned, float):
            data["planned_start"] = planned + shift
        moved.append(replace(e, visit=VisitId(visit), time=e.time + shift, data=data))
    return moved


def test_aggregate_over_visits() -> None:
    clean = summarize(V, clean_visit())
    phone = summarize(
        "v-phone",
        a_week_later(
            [*clean_visit(), ev(EventKind.VISIT_FELL_BACK_TO_PHONE, 800, "p-gp")], "v-phone"
        ),
    )
    failed = summarize(
        "v-failed",
        a_week_later(
            [*clean_visit(), ev(EventKind.MEDIA_FAILED, 500, "p-cit")], "v-failed", days=0.5
        ),
        outcome="other",
    )
    cancelled = summarize(
        "v-cancelled",
        a_week_later([*created(), ev(EventKind.VISIT_CANCELLED, 50)], "v-cancelled", days=14),
    )
    report = aggregate([clean, phone, failed, cancelled])
    assert report.visits == 4 and report.held == 3
    assert report.states == {"cancelled": 1, "ended": 3}
    assert report.visits_per_week == {"2025-W07": 2, "2025-W08": 1, "2025-W09": 1}
    assert report.outcomes == {"handled-remotely": 2, "other": 1}
    assert report.without_outcome == 0
    assert report.technical_failures == 2
    assert report.technical_failure_rate == pytest.approx(2 / 3)
    assert report.failure_reasons == {"fell-back-to-phone": 1, "media-failed": 1}
    assert report.fallbacks == 1 and report.fallback_rate == pytest.approx(1 / 3)
    assert report.no_shows == {"citizen": 1, "gp": 1, "nurse": 1, "relative": 4}
    assert report.durations.count == 3 and report.durations.median == pytest.approx(900)
    assert {b.label: b.count for b in report.durations.buckets}["15-20 min"] == 3
    assert sum(b.count for b in report.durations.buckets) == 3
    waiting = {b.label: b.count for b in report.waiting.buckets}
    assert report.waiting.count == 6 and waiting["0-30 s"] == 3 and waiting["30-60 s"] == 3
    assert report.experience.responses == 3
    assert report.experience.questions["q1"].counts == {1: 0, 2: 0, 3: 0, 4: 0, 5: 3}
    assert report.experience.questions["q3"].answered == 0
    assert report.experience.questions["q3"].mean is None
    assert report.experience.mean == pytest.approx(4.5)
    assert report.sectors == {"citizen": 3, "general-practice": 3, "municipality": 3}
    assert report.sector_mix == {"citizen+general-practice+municipality": 3}
    data = report.to_dict()
    assert data["experience"]["questions"]["q1"]["counts"]["5"] == 3


def test_aggregate_of_nothing() -> None:
    report = aggregate([])
    assert report.visits == 0 and report.technical_failure_rate is None
    assert report.fallback_rate is None and report.durations.median is None
    assert report.experience.mean is None


def test_filters() -> None:
    clean = summarize(V, clean_visit())
    later = summarize("v-later", a_week_later(clean_visit(), "v-later"))
    other_org = replace(later, visit="v-org", org="region-nord", kind="conference")
    everything = [clean, later, other_org]
    assert filter_summaries(everything) == everything
    assert filter_summaries(everything, since=T0 + 3 * 86400) == [later, other_org]
    assert filter_summaries(everything, until=T0 + 3 * 86400) == [clean]
    assert filter_summaries(everything, until=T0 + 100) == []  # until is exclusive
    assert filter_summaries(everything, since=T0 + 100) == everything
    assert filter_summaries(everything, kind="conference") == [other_org]
    assert filter_summaries(everything, org="kommune-851") == [clean, later]
    assert filter_summaries(everything, sector="municipality") == everything
    assert filter_summaries(everything, sector="region") == []


def test_iso_week_uses_danish_time() -> None:
    # Sunday 2025-02-16 23:30 UTC is already Monday 00:30 in Denmark.
    assert iso_week(1_739_748_600.0) == "2025-W08"
    assert iso_week(1_739_748_600.0 - 3600) == "2025-W07"
