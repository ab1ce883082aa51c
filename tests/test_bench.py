"""The forwarding benchmark's summary lines: what README quotes is computed from the runs."""

from bench.media_forwarding import ModeResult, baseline_line, summary_line


def result(mode: str, cpu: float, fps: list[float]) -> ModeResult:
    return ModeResult(mode, rooms=2, server_cpu=cpu, fps=fps)


def test_the_summary_line_compares_forwarding_with_the_relay() -> None:
    forward = result("forward", 0.1, [30.0] * 11 + [20.0])
    relay = result("relay", 0.4, [8.0] * 12)
    assert summary_line([forward, relay]) == (
        "forward/relay CPU ratio: 0.25; three-way rooms per core: 20.0; streams at full rate: 92%"
    )


def test_the_baseline_line_compares_two_servers_under_the_same_load() -> None:
    forward = result("forward", 0.1, [30.0] * 12)
    older = result("forward@ad8066c", 0.2, [30.0] * 12)
    assert baseline_line([forward], older) == (
        "forward vs forward@ad8066c: CPU ratio 0.50; CPU ms/frame 0.28 vs 0.56; "
        "rooms per core 20.0 vs 10.0 (2.00x)"
    )
    assert "no comparison" in baseline_line([], older)
