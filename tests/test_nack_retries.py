"""NACK retries pace themselves by the measured round trip: a packet still missing is asked for
again no sooner than one RTT after its last request, and only so many times (plain objects, a
fake clock, no I/O)."""

from __future__ import annotations

from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

from media.directreceive import newly_missing
from media.reassembly import DEFAULT_RTT_SECONDS, NACK_RETRIES, NackRetries

SSRC = 1234


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.nacks: list[tuple[float, list[int]]] = []
        self.gave_up: list[int] = []


def retries(rtt: float | None) -> tuple[NackRetries, Clock, Recorder]:
    clock, seen = Clock(), Recorder()
    nack = NackRetries(
        lambda _ssrc, lost: seen.nacks.append((clock.now, lost)),
        clock,
        give_up=seen.gave_up.append,
        rtt=lambda: rtt,
    )
    return nack, clock, seen


def feed(retries: NackRetries, clock: Clock, first: int, seconds: float, step: float) -> int:
    """Packets first, first+1, ... one every `step` seconds (a steady stream); returns the next."""
    sequence = first
    end = clock.now + seconds
    while clock.now < end:
        retries.add(SSRC, sequence)
        sequence += 1
        clock.now += step
    return sequence


def test_a_missing_packet_is_asked_for_again_no_sooner_than_one_measured_rtt() -> None:
    nack, clock, seen = retries(rtt=0.3)
    nack.add(SSRC, 10)
    nack.add(SSRC, 12)  # 11 is missing (aiortc's generator NACKs it once, now)
    feed(nack, clock, 13, seconds=1.0, step=0.01)
    times = [at for at, lost in seen.nacks if 11 in lost]
    assert len(times) == 3  # at 0.3, 0.6 and 0.9 s: one a round trip
    gaps = [b - a for a, b in zip([100.0, *times], times, strict=False)]
    assert min(gaps) >= 0.3 - 1e-9
    assert max(gaps) < 0.3 + 0.011  # and not much later (packets arrive every 10 ms)


def test_a_longer_rtt_means_fewer_repeats_and_none_within_it() -> None:
    short, clock_short, seen_short = retries(rtt=0.05)
    long, clock_long, seen_long = retries(rtt=0.4)
    for nack, clock in ((short, clock_short), (long, clock_long)):
        nack.add(SSRC, 1)
        nack.add(SSRC, 3)
        feed(nack, clock, 4, seconds=0.39, step=0.01)
    assert len(seen_short.nacks) == 7  # every 50 ms
    assert seen_long.nacks == []  # not once within one round trip of 400 ms


def test_without_a_measured_rtt_the_default_paces_the_retries() -> None:
    nack, clock, seen = retries(rtt=None)
    nack.add(SSRC, 1)
    nack.add(SSRC, 3)
    feed(nack, clock, 4, seconds=DEFAULT_RTT_SECONDS * 2.5, step=0.005)
    times = [at - 100.0 for at, _ in seen.nacks]
    assert len(times) == 2 and times[0] >= DEFAULT_RTT_SECONDS - 1e-9


def test_retries_are_capped_then_a_keyframe_is_asked_for_once() -> None:
    nack, clock, seen = retries(rtt=0.02)
    nack.add(SSRC, 1)
    nack.add(SSRC, 3)
    feed(nack, clock, 4, seconds=5.0, step=0.01)
    assert sum(2 in lost for _, lost in seen.nacks) == NACK_RETRIES
    assert seen.gave_up == [SSRC]


def test_a_packet_that_arrives_is_not_asked_for_again() -> None:
    nack, clock, seen = retries(rtt=0.1)
    nack.add(SSRC, 1)
    nack.add(SSRC, 3)
    clock.now += 0.05
    nack.add(SSRC, 2)  # the retransmission came
    feed(nack, clock, 4, seconds=1.0, step=0.01)
    assert seen.nacks == [] and seen.gave_up == []


def test_a_new_gap_asks_only_for_its_own_packets_not_again_for_older_ones() -> None:
    """aiortc's NACK generator keeps every packet still missing; NACKing all of them at each new
    gap repeated requests within one round trip (the retries above pace the repeats)."""
    generator = NackGenerator()
    asked = [newly_missing(generator, packet(s)) for s in (10, 12, 13, 16, 11, 17, 20)]
    assert asked == [[], [11], [], [14, 15], [], [], [18, 19]]
    assert generator.missing == {14, 15, 18, 19}
    # Across the wrap of the 16-bit sequence number too.
    assert [newly_missing(generator, packet(s)) for s in (65534, 1)] == [[], []]
    wrapped = NackGenerator()
    assert [newly_missing(wrapped, packet(s)) for s in (65534, 1)] == [[], [65535, 0]]


def packet(sequence: int) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=sequence, ssrc=SSRC)
