"""Forwarding encoded frames against the MediaRelay baseline, under the same load, in one run.

    python3 -m bench.media_forwarding [--rooms 2] [--seconds 20] [--bots light|full]
    python3 -m bench.media_forwarding --quick     # 1 room, 14 s calls: under 60 s
    python3 -m bench.media_forwarding --baseline-rev ad8066c   # also an older server, same load
    python3 -m bench.media_forwarding --quick --fastpath-pairs 3   # compiled vs Python forwarding

For each media mode (`forward`, then `relay`) the real server runs in its own process on
loopback, N visits are booked with `screenvisit visit create --no-waiting-room`, and three
`screenvisit bot` processes join each. Light bots (the default) send VP8 640x480@30 at about
1.2 Mbps (a loop encoded once, with camera-like grain) and Opus, and count the encoded frames
they receive, so the machine's CPU goes to the server; `--bots full` bots encode and decode
like browsers (and on a small machine take most of its CPU). Measured:

- server CPU-seconds per second (psutil, user + system, all threads), over the steady window:
  from two seconds after every participant receives video (the server's `media-first-frame`
  events, direction down) until a second before the first bot leaves;
- delivered frame rate per stream (publisher -> subscriber): the subscribing bot's decoded
  frames over the time from its first frame of that stream to the moment either of the two
  left (join and leave times from the server's event log);
- bitrate per stream: each subscriber's down bitrate from the server's own connection-quality
  samples inside the steady window (transport bytes: VP8 + Opus + RTCP, after SRTP), over the
  two streams it receives;
- join -> first frame per stream, as the subscribing bot reports it (`first_frame_seconds`:
  from sending `join` to its first frame of that remote participant);
- end-to-end frame latency per stream (light bots): each frame carries the time the publishing
  bot handed it to its sender (`media.stamp`), the subscribing bot times its arrival as a
  complete frame; the table gives the median stream's p50 and the p95 over streams' p95s. The
  relay re-encodes, which drops the stamps: no latency for it;
- the bots' own CPU and how busy the whole machine was, because on a small machine the bots
  (which encode and decode like browsers) compete with the server.

With `--fastpath-pairs N` the forwarding mode also runs N pairs of runs with the compiled
forwarding path (`SCREENVISIT_FASTPATH=on`) and the Python one (`off`), each pair in alternating
order, and reports server CPU per forwarded packet (the server's own `forwarded_packets` counter,
read from its metrics port) and rooms per core for both, and their ratio per pair.

With `--baseline-rev REV` the forwarding mode also runs with the server (and visit booking) of
an older revision, exported with `git archive`, under the same bots: per-core figures depend
on the machine, the ratio between two servers measured in one run does not.

"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.three_way_room import free_port

ROLES = ("citizen", "nurse", "gp")
MODES = ("forward", "relay")
FULL_RATE_FPS = 27.0
#: After every participant receives video, let keyframes and bitrate estimates settle.
SETTLE_SECONDS = 2.0
#: Stop measuring this long before the first bot's call ends.
END_MARGIN_SECONDS = 1.0
QUALITY_INTERVAL_SECONDS = 2
#: How long every participant may take to receive video: bots start one after another, and
#: each encodes its loop first (seconds of CPU on a small machine).
STEADY_TIMEOUT_SECONDS = 30.0
STEADY_TIMEOUT_PER_ROOM_SECONDS = 10.0
MODE_WIDTH = 16


@dataclass
class ModeResult:
    mode: str
    rooms: int
    window_seconds: float = 0.0
    server_cpu: float = 0.0
    bots_cpu: float = 0.0
    machine_busy: float = 0.0
    fps: list[float] = field(default_factory=list)
    kbps: list[float] = field(default_factory=list)
    first_frame: list[float] = field(default_factory=list)
    #: Per stream: the p50 and the p95 of its stamped frames' end-to-end latency, in ms.
    latency_p50: list[float] = field(default_factory=list)
    latency_p95: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Why this mode gave no figures (its server did not start, its calls never got steady...).
    failure: str | None = None
    #: RTP packets the server sent to subscribers per second over the window (NaN: unknown).
    packets_per_second: float = math.nan

    @property
    def us_per_packet(self) -> float:
        """Server CPU per RTP packet forwarded to a subscriber, in microseconds."""
        if not self.packets_per_second or math.isnan(self.packets_per_second):
            return math.nan
        return 1e6 * self.server_cpu / self.packets_per_second

    @property
    def ms_per_frame(self) -> float:
        """Server CPU per video frame delivered to a subscriber (audio rides along): a cost
        that stays comparable when a mode is starved of CPU and delivers fewer frames."""
        delivered = sum(self.fps)
        return 1000 * self.server_cpu / delivered if delivered > 0 else math.nan

    @property
    def rooms_per_core(self) -> float:
        """1 / (server CPU-s/s per room)."""
        return self.rooms / self.server_cpu if self.server_cpu else math.nan

    @property
    def full_rate_percent(self) -> float:
        if not self.fps:
            return 0.0
        return 100.0 * sum(1 for f in self.fps if f >= FULL_RATE_FPS) / len(self.fps)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks; `q` in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def _tree_env(env: dict[str, str], tree: Path | None) -> dict[str, str]:
    """`env` for a server command run from `tree` (an exported older revision) or from here."""
    if tree is None:
        return env
    return {**env, "PYTHONPATH": str(tree)}


def export_revision(revision: str, into: Path) -> str:
    """Write `revision`'s files into `into` (git archive: the checkout is not touched) and
    return its short commit id."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", f"{revision}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def _query(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the server's SQLite metadata (WAL: readers do not block the running server)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _receiving_video(database: Path) -> set[str]:
    """Participants the server has sent at least one video frame to."""
    if not database.exists():
        return set()
    try:
        rows = _query(
            database, "SELECT participant, data FROM events WHERE kind = 'media-first-frame'"
        )
    except sqlite3.OperationalError:
        return set()  # not migrated yet
    out: set[str] = set()
    for participant, data in rows:
        details = json.loads(data or "{}")
        if details.get("media") == "video" and details.get("direction") == "down":
            out.add(participant)
    return out


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return math.nan
    return float(times.user + times.system)


def _machine_busy() -> tuple[float, float]:
    times = psutil.cpu_times()
    return float(times.idle + getattr(times, "iowait", 0.0)), float(sum(times))


async def run_mode(
    mode: str,
    rooms: int,
    seconds: float,
    width: int,
    height: int,
    light: bool,
    server_tree: Path | None = None,
    label: str | None = None,
    extra_env: dict[str, str] | None = None,
    patience: float = 1.0,
) -> ModeResult:
    """One mode's run (its start-up timeouts times `patience`). With `server_tree`, the server
    (and the visit booking) run from that exported revision while the bots stay this
    checkout's, so the load is the same."""
    result = ModeResult(label or mode, rooms)
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        data_dir = Path(tmp) / "data"
        database = data_dir / "metadata.sqlite3"
        env = {
            **os.environ,
            "SCREENVISIT_DATA_DIR": str(data_dir),
            "SCREENVISIT_PORT": str(free_port()),
            "SCREENVISIT_HOST": "127.0.0.1",
            "SCREENVISIT_ICE_HOSTS": "127.0.0.1",
            "SCREENVISIT_LOG_LEVEL": "warning",
            "SCREENVISIT_QUALITY_INTERVAL": str(QUALITY_INTERVAL_SECONDS),
            "SCREENVISIT_METRICS_PORT": str(free_port()),
            **(extra_env or {}),
        }
        metrics_url = f"http://127.0.0.1:{env['SCREENVISIT_METRICS_PORT']}/metrics"
        server = await asyncio.create_subprocess_exec(
            *_cli("serve", "--no-demo", "--media-mode", mode),
            env=_tree_env(env, server_tree),
            cwd=server_tree,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        bots: list[tuple[str, asyncio.subprocess.Process]] = []
        try:
            assert server.stdout is not None
            line = await asyncio.wait_for(server.stdout.readline(), timeout=30 * patience)
            if b"listening on" not in line:
                raise RuntimeError(f"the {mode} server did not start: {line!r}")
            visits = await asyncio.gather(
                *(_create_visit(_tree_env(env, server_tree), server_tree) for _ in range(rooms))
            )
            for visit in visits:
                for index, role in enumerate(ROLES):
                    bot = await asyncio.create_subprocess_exec(
                        *_cli("bot", visit["links"][role], "--json", "--seconds", str(seconds)),
                        "--width",
                        str(width),
                        "--height",
                        str(height),
                        "--hue",
                        str(80 * index),
                        *(("--no-decode",) if light else ()),
                        env=env,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                    bots.append((role, bot))
            await _wait_until_everyone_receives(database, 3 * rooms, patience)
            await asyncio.sleep(SETTLE_SECONDS)
            joins = _event_times(database, "participant-joined")
            end = min(joins.values()) + seconds - END_MARGIN_SECONDS
            server_process = psutil.Process(server.pid)
            bot_processes = [psutil.Process(b.pid) for _, b in bots]
            packets0 = await asyncio.to_thread(_forwarded_packets, metrics_url)
            cpu0 = _cpu(server_process)
            bots0 = sum(_cpu(p) for p in bot_processes)
            idle0, total0 = _machine_busy()
            t0 = time.time()
            if end - t0 < 2.0:
                raise RuntimeError(
                    f"only {end - t0:.1f} s of steady call left to measure: raise --seconds"
                )
            await asyncio.sleep(end - t0)
            cpu1 = _cpu(server_process)
            bots1 = sum(_cpu(p) for p in bot_processes)
            idle1, total1 = _machine_busy()
            t1 = time.time()
            packets1 = await asyncio.to_thread(_forwarded_packets, metrics_url)
            outputs = [await bot.communicate() for _, bot in bots]
        finally:
            for _, bot in bots:
                if bot.returncode is None:
                    bot.kill()
                    await bot.wait()
            if server.returncode is None:
                server.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(server.wait(), timeout=30)
                except TimeoutError:
                    server.kill()
                    await server.wait()
        result.window_seconds = t1 - t0
        result.server_cpu = (cpu1 - cpu0) / (t1 - t0)
        result.bots_cpu = (bots1 - bots0) / (t1 - t0)
        result.machine_busy = 1.0 - (idle1 - idle0) / max(total1 - total0, 1e-9)
        result.packets_per_second = (packets1 - packets0) / (t1 - t0)
        reports = []
        for (role, _), (out, _) in zip(bots, outputs, strict=True):
            try:
                reports.append(json.loads(out))
            except json.JSONDecodeError:
                result.problems.append(f"a {role} bot printed no report")
        _streams(result, reports, database, t0, t1)
    return result


def _forwarded_packets(url: str) -> float:
    """The server's RTP packets sent to subscribers so far (NaN when its metrics are not
    there: an older revision, say)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return math.nan
    for line in text.splitlines():
        if line.startswith("screenvisit_forwarded_packets_total"):
            return float(line.rsplit(" ", 1)[1])
    return math.nan


async def _create_visit(env: dict[str, str], tree: Path | None) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *_cli("visit", "create", "--json", "--no-waiting-room"),
        env=env,
        cwd=tree,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"visit create failed: {err.decode()}")
    visit: dict[str, Any] = json.loads(out)
    return visit


async def _wait_until_everyone_receives(
    database: Path, participants: int, patience: float = 1.0
) -> None:
    """Poll the server's event log until every participant has been sent video."""
    timeout = patience * (
        STEADY_TIMEOUT_SECONDS + STEADY_TIMEOUT_PER_ROOM_SECONDS * participants / 3
    )
    deadline = time.monotonic() + timeout
    while len(await asyncio.to_thread(_receiving_video, database)) < participants:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every participant received video within {timeout:.0f} s")
        await asyncio.sleep(0.25)


def _event_times(database: Path, kind: str) -> dict[str, float]:
    """The first time of `kind` per participant (server wall clock, as this process's)."""
    times: dict[str, float] = {}
    for participant, at in _query(
        database, "SELECT participant, time FROM events WHERE kind = ? ORDER BY time", kind
    ):
        times.setdefault(participant, float(at))
    return times


def _streams(
    result: ModeResult, reports: list[dict[str, Any]], database: Path, t0: float, t1: float
) -> None:
    joined = _event_times(database, "participant-joined")
    left = _event_times(database, "participant-left")
    rates: dict[str, list[float]] = {}
    for participant, kbps in _query(
        database,
        "SELECT participant, bitrate_down_kbps FROM quality"
        " WHERE time >= ? AND time <= ? AND bitrate_down_kbps IS NOT NULL",
        t0,
        t1,
    ):
        rates.setdefault(participant, []).append(float(kbps))
    for report in reports:
        me = report.get("participant")
        if "error" in report or me not in joined:
            result.problems.append(f"a bot failed: {report.get('error', report)}")
            result.fps += [0.0, 0.0]
            continue
        # The bot's clock starts when it sends `join`; the server logs the join just before
        # it answers `joined`.
        started = joined[me] - float(report["join_seconds"] or 0.0)
        remotes = [r for r in report["remotes"] if r["video_frames"] > 0]
        for remote in remotes:
            first = remote["first_frame_seconds"]
            ended = min(left.get(me, math.inf), left.get(remote["participant"], math.inf))
            duration = ended - (started + first)
            if not math.isfinite(duration) or duration <= 0:
                result.problems.append(f"no leave time for {me} or {remote['participant']}")
                continue
            result.fps.append(remote["video_frames"] / duration)
            result.first_frame.append(float(first))
            if remote.get("latency_ms"):
                result.latency_p50.append(float(remote["latency_ms"]["p50"]))
                result.latency_p95.append(float(remote["latency_ms"]["p95"]))
        for _ in range(2 - len(remotes)):
            result.problems.append(f"{report['role']} received video from fewer than two")
            result.fps.append(0.0)
        if me in rates and remotes:
            per_stream = statistics.fmean(rates[me]) / len(remotes)
            result.kbps += [per_stream] * len(remotes)


async def run_each(
    modes: list[str], rooms: int, runner: Callable[[str], Awaitable[ModeResult]]
) -> list[ModeResult]:
    """Run every mode in turn: one that fails is reported as failed, and the others still run
    and keep their figures."""
    results = []
    for mode in modes:
        print(f"running {mode} ...", flush=True)
        try:
            results.append(await runner(mode))
        except Exception as exc:  # a bench run reports every failure and goes on
            print(f"  {mode} failed: {exc}", flush=True)
            results.append(ModeResult(mode, rooms, failure=str(exc)))
    return results


def print_table(results: list[ModeResult], width: int, height: int, seconds: float) -> None:
    header = (
        f"{'mode':{MODE_WIDTH}s} {'rooms':>5s} {'server CPU s/s':>14s} {'median fps':>10s} "
        f"{'min fps':>7s} {'full rate':>9s} {'join->1st frame p50/p95':>23s} "
        f"{'latency p50/p95':>15s} {'kbps/stream':>11s} {'CPU ms/frame':>12s} "
        f"{'CPU µs/packet':>13s} "
        f"{'bots CPU s/s':>12s} "
        f"{'machine busy':>12s}"
    )
    print(header)
    for r in results:
        if r.failure is not None:
            print(f"{r.mode:{MODE_WIDTH}s} failed: {r.failure}")
            continue
        first = f"{percentile(r.first_frame, 50):.2f} / {percentile(r.first_frame, 95):.2f} s"
        kbps = f"{statistics.median(r.kbps):.0f}" if r.kbps else "n/a"
        latency = (
            f"{percentile(r.latency_p50, 50):.0f} / {percentile(r.latency_p95, 95):.0f} ms"
            if r.latency_p50
            else "n/a"
        )
        print(
            f"{r.mode:{MODE_WIDTH}s} {r.rooms:5d} {r.server_cpu:14.3f} "
            f"{statistics.median(r.fps) if r.fps else math.nan:10.1f} "
            f"{min(r.fps, default=math.nan):7.1f} {r.full_rate_percent:8.0f}% "
            f"{first:>23s} {latency:>15s} {kbps:>11s} {r.ms_per_frame:12.2f} "
            f"{r.us_per_packet:13.1f} {r.bots_cpu:12.2f} "
            f"{100 * r.machine_busy:11.0f}%"
        )
    for r in results:
        for problem in r.problems:
            print(f"  {r.mode}: {problem}")
    for r in (r for r in results if r.failure is None):
        print(
            f"  {r.mode}: {len(r.fps)} streams, steady window {r.window_seconds:.1f} s of "
            f"{seconds:.0f} s calls"
        )
        if r.machine_busy >= 0.9:
            print(
                f"  {r.mode}: the machine was {100 * r.machine_busy:.0f}% busy: server and bots "
                "competed for CPU, and the bots' own encoding and decoding may limit frame rates"
            )
        if r.full_rate_percent < 100:
            print(
                f"  {r.mode}: streams fell below {FULL_RATE_FPS:.0f} fps, so its server CPU s/s "
                "is what it managed under this load, not what full rate would need (a floor); "
                "CPU ms/frame compares the modes' costs"
            )


def baseline_line(results: list[ModeResult], baseline: ModeResult) -> str:
    """This checkout's forwarding against the same load on an older revision's server."""
    forward = next((r for r in results if r.mode == "forward"), None)
    if (
        forward is None
        or forward.failure is not None
        or baseline.failure is not None
        or not forward.server_cpu
        or not baseline.server_cpu
    ):
        return f"{baseline.mode}: no comparison (forward was not run or used no CPU)"
    now, then = forward.rooms_per_core, baseline.rooms_per_core
    return (
        f"forward vs {baseline.mode}: CPU ratio {forward.server_cpu / baseline.server_cpu:.2f}; "
        f"CPU ms/frame {forward.ms_per_frame:.2f} vs {baseline.ms_per_frame:.2f}; "
        f"rooms per core {now:.1f} vs {then:.1f} ({now / then:.2f}x)"
    )


def summary_line(results: list[ModeResult]) -> str:
    """The figures README quotes; each mode on its own when either failed."""
    by_mode = {r.mode: r for r in results}
    forward, relay = by_mode.get("forward"), by_mode.get("relay")
    if any(r.failure is not None for r in results):
        return "; ".join(
            f"{r.mode}: failed ({r.failure})"
            if r.failure is not None
            else f"{r.mode}: three-way rooms per core: {r.rooms_per_core:.1f}; "
            f"streams at full rate: {r.full_rate_percent:.0f}%"
            for r in results
        )
    ratio = forward.server_cpu / relay.server_cpu if forward and relay else math.nan
    per_core = forward.rooms_per_core if forward else math.nan
    full = forward.full_rate_percent if forward else math.nan
    return (
        f"forward/relay CPU ratio: {ratio:.2f}; three-way rooms per core: {per_core:.1f}; "
        f"streams at full rate: {full:.0f}%"
    )


async def main(args: argparse.Namespace) -> None:
    cores = psutil.cpu_count() or 1
    print(
        f"media forwarding benchmark: {args.rooms} three-way room(s) per mode, {args.bots} bots "
        f"at {args.width}x{args.height}@30 VP8 + Opus, {args.seconds:.0f} s calls, loopback, "
        f"{cores} cores (server, bots and this script share them)"
    )
    if args.quick:
        print(f"--quick: {args.rooms} room, {args.seconds:.0f} s calls")
    results = await run_each(
        args.modes,
        args.rooms,
        lambda mode: run_mode(
            mode,
            args.rooms,
            args.seconds,
            args.width,
            args.height,
            args.bots == "light",
            patience=args.patience,
        ),
    )
    baselines: list[ModeResult] = []
    for revision in args.baseline_rev:
        with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tree:
            commit = export_revision(revision, Path(tree))
            label = f"forward@{commit}"
            baselines += await run_each(
                [label],
                args.rooms,
                lambda _mode: run_forward(args, label, server_tree=Path(tree)),  # noqa: B023
            )
    pairs = await run_fastpath_pairs(args) if args.fastpath_pairs else []
    print_table(
        results + baselines + [r for pair in pairs for r in pair],
        args.width,
        args.height,
        args.seconds,
    )
    for baseline in baselines:
        print(baseline_line(results, baseline))
    if pairs:
        print(fastpath_lines(pairs))
    if results:
        print(summary_line(results))


FASTPATHS = {"compiled": "on", "python": "off"}


async def run_forward(
    args: argparse.Namespace,
    label: str,
    server_tree: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> ModeResult:
    """A forward run as `args` ask, under `label`."""
    return await run_mode(
        "forward",
        args.rooms,
        args.seconds,
        args.width,
        args.height,
        args.bots == "light",
        server_tree=server_tree,
        label=label,
        extra_env=extra_env,
        patience=args.patience,
    )


async def run_fastpath_pairs(args: argparse.Namespace) -> list[list[ModeResult]]:
    """`args.fastpath_pairs` pairs of forwarding runs, compiled and Python, alternating which
    goes first; each pair's results in the order (compiled, python)."""
    pairs = []
    for index in range(args.fastpath_pairs):
        order = list(FASTPATHS) if index % 2 == 0 else list(reversed(FASTPATHS))
        runs = await run_each(
            [f"forward/{name}" for name in order],
            args.rooms,
            lambda label: run_forward(
                args, label, extra_env={"SCREENVISIT_FASTPATH": FASTPATHS[label.split("/")[1]]}
            ),
        )
        pairs.append(sorted(runs, key=lambda r: r.mode != "forward/compiled"))
    return pairs


def fastpath_lines(pairs: list[list[ModeResult]]) -> str:
    """Per pair and over pairs (median): µs of server CPU per forwarded packet and rooms per
    core, compiled vs Python."""
    lines = []
    ratios, compiled_us, python_us, compiled_rooms, python_rooms = [], [], [], [], []
    for index, (compiled, python) in enumerate(pairs, 1):
        if compiled.failure is not None or python.failure is not None:
            lines.append(f"pair {index}: a run failed, no ratio")
            continue
        ratio = compiled.us_per_packet / python.us_per_packet
        ratios.append(ratio)
        compiled_us.append(compiled.us_per_packet)
        python_us.append(python.us_per_packet)
        compiled_rooms.append(compiled.rooms_per_core)
        python_rooms.append(python.rooms_per_core)
        lines.append(
            f"pair {index}: CPU per forwarded packet {compiled.us_per_packet:.1f} µs compiled vs "
            f"{python.us_per_packet:.1f} µs python (ratio {ratio:.2f}); rooms per core "
            f"{compiled.rooms_per_core:.1f} vs {python.rooms_per_core:.1f}; full rate "
            f"{compiled.full_rate_percent:.0f}% vs {python.full_rate_percent:.0f}%"
        )
    if ratios:
        lines.append(
            f"compiled vs python, median of {len(ratios)} pair(s): CPU per forwarded packet "
            f"{statistics.median(compiled_us):.1f} vs {statistics.median(python_us):.1f} µs "
            f"(ratio {statistics.median(ratios):.2f}, range {min(ratios):.2f}-"
            f"{max(ratios):.2f}); three-way rooms per core {statistics.median(compiled_rooms):.1f}"
            f" vs {statistics.median(python_rooms):.1f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=None, help="three-way rooms (default 2)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="length of each bot's call (default 20)"
    )
    parser.add_argument("--width", type=int, default=None, help="bot video width (default 640)")
    parser.add_argument("--height", type=int, default=None, help="bot video height (default 480)")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="comma-separated media modes to run, in order (default forward,relay)",
    )
    parser.add_argument(
        "--bots",
        choices=("light", "full"),
        default="light",
        help="light (default): bots send a 1.2 Mbps VP8 loop encoded once and count encoded"
        " frames, so the machine's CPU goes to the server; full: bots encode and decode like"
        " browsers",
    )
    parser.add_argument(
        "--baseline-rev",
        metavar="REV",
        action="append",
        default=[],
        help="also run forward with the server of this git revision (bots stay this"
        " checkout's) and compare; repeatable. e.g. ad8066c: the code when the media"
        " performance issue was filed",
    )
    parser.add_argument(
        "--fastpath-pairs",
        type=int,
        default=0,
        metavar="N",
        help="also run N interleaved pairs of forward runs, compiled (SCREENVISIT_FASTPATH=on)"
        " and Python (off), and compare CPU per forwarded packet",
    )
    parser.add_argument(
        "--patience",
        type=float,
        default=1.0,
        help="multiply the start-up timeouts (server start, everyone receiving video) on a"
        " machine busy with other work; raise --seconds with it",
    )
    parser.add_argument("--quick", action="store_true", help="1 room, 14 s calls: under 60 s")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rooms = args.rooms if args.rooms is not None else (1 if quick else 2)
    args.seconds = args.seconds if args.seconds is not None else (14.0 if quick else 20.0)
    args.width = args.width if args.width is not None else 640
    args.height = args.height if args.height is not None else 480
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in args.modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; expected {', '.join(MODES)}")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
