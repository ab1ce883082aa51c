"""The forwarding benchmark's summary lines: what README quotes is computed from the runs."""

from bench.media_forwarding import (
    ModeResult,
    baseline_line,
    fastpath_lines,
    run_each,
    summary_line,
)
from bench.signaling_messages import measure


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


async def test_a_failing_mode_is_reported_on_its_own_and_never_discards_the_other() -> None:
    async def runner(mode: str) -> ModeResult:
        if mode == "relay":
            raise RuntimeError("not every participant received video within 30 s")
        return result(mode, 0.1, [30.0] * 12)

    results = await run_each(["forward", "relay"], 2, runner)
    assert [r.mode for r in results] == ["forward", "relay"]
    assert results[0].failure is None and results[0].rooms_per_core == 20.0
    assert results[1].failure == "not every participant received video within 30 s"
    assert summary_line(results) == (
        "forward: three-way rooms per core: 20.0; streams at full rate: 100%; "
        "relay: failed (not every participant received video within 30 s)"
    )


async def test_the_relay_alone_is_summarised_when_forwarding_fails() -> None:
    async def runner(mode: str) -> ModeResult:
        if mode == "forward":
            raise RuntimeError("the forward server did not start: b''")
        return result(mode, 0.4, [8.0] * 12)

    results = await run_each(["forward", "relay"], 2, runner)
    assert summary_line(results) == (
        "forward: failed (the forward server did not start: b''); "
        "relay: three-way rooms per core: 5.0; streams at full rate: 0%"
    )


def test_the_signaling_bench_measures_the_same_messages_both_ways() -> None:
    """pydantic and msgspec encode equal messages (the msgspec twins follow the down models),
    so the figures compare like with like."""
    results = measure(1)
    assert set(results) == {"inbound", "outbound"}
    assert all(figures["ratio"] > 0 for figures in results.values())


def test_the_fastpath_lines_compare_compiled_and_python_per_pair_and_over_pairs() -> None:
    def run(mode: str, cpu: float, packets: float) -> ModeResult:
        return ModeResult(mode, rooms=1, server_cpu=cpu, fps=[30.0] * 6, packets_per_second=packets)

    pairs = [
        [run("forward/compiled", 0.06, 2000), run("forward/python", 0.08, 2000)],
        [run("forward/compiled", 0.05, 2000), run("forward/python", 0.10, 2000)],
        [ModeResult("forward/compiled", 1, failure="no video"), run("forward/python", 0.1, 1)],
    ]
    assert fastpath_lines(pairs).splitlines() == [
        "pair 1: CPU per forwarded packet 30.0 µs compiled vs 40.0 µs python (ratio 0.75); "
        "rooms per core 16.7 vs 12.5; full rate 100% vs 100%",
        "pair 2: CPU per forwarded packet 25.0 µs compiled vs 50.0 µs python (ratio 0.50); "
        "rooms per core 20.0 vs 10.0; full rate 100% vs 100%",
        "pair 3: a run failed, no ratio",
        "compiled vs python, median of 2 pair(s): CPU per forwarded packet 27.5 vs 45.0 µs "
        "(ratio 0.62, range 0.50-0.75); three-way rooms per core 18.3 vs 11.2",
    ]
