"""Token buckets per socket, on an injected clock."""

from __future__ import annotations

from pathlib import Path

from signaling.limits import ANY, LIMIT_OF, MessageLimits, Rate, SocketLimiter, TokenBucket
from signaling.messages import SCHEMAS


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(Rate(burst=3, per_second=0.5), now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 2.0  # one token every 2 s
    assert bucket.take(1.0) == 1.0
    assert bucket.take(2.0) == 0.0
    assert bucket.take(100.0) == 0.0 and bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == 0.0 and bucket.take(100.0) > 0  # never above the burst


def test_limits_are_per_kind_and_strikes_run_out() -> None:
    clock = Clock()
    limiter = SocketLimiter(
        MessageLimits({"chat": Rate(1, 1), "ping": Rate(1, 1)}, Rate(2, 0.1)), clock
    )
    assert limiter.check("chat") == 0.0
    assert limiter.check("chat") > 0
    assert limiter.check("ping") == 0.0  # its own bucket
    assert limiter.check("join") == 0.0  # not limited
    assert [limiter.strike(), limiter.strike(), limiter.strike()] == [False, False, True]
    clock.now += 10
    assert limiter.strike() is False  # forgiven in time


def test_every_limited_message_is_a_message_and_the_protocol_lists_the_rates() -> None:
    assert set(LIMIT_OF) <= set(SCHEMAS)
    protocol = (Path(__file__).resolve().parent.parent / "signaling" / "PROTOCOL.md").read_text()
    section = protocol.split("## Limits per socket", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[0]: Rate(float(cells[2]), float(cells[3]))
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| limit", "| ---"))
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert rows == dict(MessageLimits().rates)
    assert ANY in rows
