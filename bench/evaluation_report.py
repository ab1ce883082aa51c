"""The evaluation report over a large history, and the event loop's lag while it runs, in one run.

    python3 -m bench.evaluation_report [--visits 10000] [--days 30]
    python3 -m bench.evaluation_report --baseline-rev e87eeb8   # also the older code, same data

One SQLite file is filled with N synthetic visits of one organisation spread over `--days` days
(each: booked, three people join, two quality samples each, they leave, the visit ends, an
outcome), written straight with sqlite3 after the project's own migrations. Then, for each code
revision (this tree, and each `--baseline-rev` exported with `git archive`), a fresh process
opens the file through `rooms.sql.open_database` and builds the report of the organisation the
way `GET /api/evaluation/report` does (`server.reports.gather` + `aggregate`), twice:

- `week`: the period of the last 7 days (what an evaluator usually asks for);
- `all`: the whole history (no period);
- `all/w` (this tree only): the whole history again, from a worker process that has served a
  report already (as a server's is after its first report): `week` and `all` include starting
  the worker.

Measured per report: wall time, and the event loop's lag meanwhile: a probe task on the same
loop sleeps 5 ms at a time and records how much later than asked it woke (max and p99). A loop
that the report blocks shows the whole report time as lag. Figures depend on the machine; the
ratio between two revisions measured in one run does not.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ORG = "bench-org"
DAY = 86400.0
PROBE_SECONDS = 0.005


def fill(path: Path, visits: int, days: int, now: float, org: str = ORG) -> None:
    """N synthetic visits of `org` over the last `days` days, straight into the tables."""
    from rooms.sql import open_database

    async def migrate() -> None:
        db = await open_database(None, path)
        await db.close()

    asyncio.run(migrate())
    rng = random.Random(18)
    events: list[tuple[Any, ...]] = []
    quality: list[tuple[Any, ...]] = []
    outcomes: list[tuple[Any, ...]] = []
    roles = (("citizen", "citizen"), ("nurse", "municipality"), ("gp", "general-practice"))
    for n in range(visits):
        visit = f"v{n:06d}"
        created = now - rng.uniform(0, days * DAY)
        start = created + 600
        events.append(
            (created, visit, "visit-created", None, None, None, org, {"kind": "assisted"})
        )
        t = start
        for i, (role, sector) in enumerate(roles):
            person = f"{visit}-p{i}"
            events.append((t, visit, "participant-invited", person, role, sector, org, {}))
            t += rng.uniform(1, 60)
            events.append((t, visit, "participant-joined", person, role, sector, org, {}))
            for k in range(2):
                bitrates = (rng.uniform(300, 1500), rng.uniform(300, 1500))
                measured = (40.0, 0.01, 0.01, 5.0, *bitrates, rng.uniform(10, 30))
                quality.append((t + 10 * (k + 1), visit, person, role, sector, "good", *measured))
        end = t + rng.uniform(300, 1800)
        for i, (role, sector) in enumerate(roles):
            events.append((end, visit, "participant-left", f"{visit}-p{i}", role, sector, org, {}))
        events.append((end, visit, "visit-ended", None, None, None, org, {}))
        outcomes.append((visit, "handled-remotely", end))
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO events (time, visit, kind, participant, role, sector, org, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(*e[:7], json.dumps(e[7])) for e in events],
        )
        conn.executemany(
            "INSERT INTO quality (time, visit, participant, role, sector, level, rtt_ms, loss_up,"
            " loss_down, jitter_ms, bitrate_up_kbps, bitrate_down_kbps, fps_up)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            quality,
        )
        columns = [row[1] for row in conn.execute("PRAGMA table_info(outcomes)")]
        if "note" in columns:
            conn.executemany(
                "INSERT INTO outcomes (visit, outcome, note, time) VALUES (?, ?, NULL, ?)", outcomes
            )
        else:
            conn.executemany(
                "INSERT INTO outcomes (visit, outcome, time) VALUES (?, ?, ?)", outcomes
            )
    conn.close()


async def _probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time()
        await asyncio.sleep(PROBE_SECONDS)
        lags.append(max(0.0, loop.time() - asked - PROBE_SECONDS))


async def _one_report(path: Path, since: float | None, warm: bool = False) -> dict[str, Any]:
    from rooms.evaluation import aggregate
    from rooms.eventlog import SqlEventLog
    from rooms.sql import open_database
    from server import reports

    db = await open_database(None, path)
    try:
        events = SqlEventLog(db)
        workers_of = getattr(reports, "ReportWorkers", None)
        workers = workers_of(reports.Source(None, path)) if workers_of is not None else None
        if workers is not None and warm:  # a worker that has served a report already
            await workers.report(ORG, reports.Filters(since=time.time() + DAY))
        lags: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe(lags, stop))
        await asyncio.sleep(0.05)  # the probe is ticking
        lags.clear()
        began = time.perf_counter()
        filters = reports.Filters(since=since)
        if workers is not None:  # this tree: the server's worker process
            try:
                visits, _report = await workers.report(ORG, filters)
            finally:
                await workers.close()
        else:  # older trees: gather on the loop, then aggregate
            summaries = await reports.gather(db, events, ORG, filters)
            visits = len(summaries)
            aggregate(summaries)
        seconds = time.perf_counter() - began
        stop.set()
        await probe
    finally:
        await db.close()
    ordered = sorted(lags) or [0.0]
    return {
        "visits": visits,
        "seconds": seconds,
        "lag_max_ms": ordered[-1] * 1000,
        "lag_p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
    }


def measure(path: Path, now: float) -> dict[str, Any]:
    """Both reports in this process (whichever code PYTHONPATH gives)."""
    figures = {
        "week": asyncio.run(_one_report(path, now - 7 * DAY)),
        "all": asyncio.run(_one_report(path, None)),
    }
    if importlib.util.find_spec("server.reports") is not None:
        from server import reports

        if hasattr(reports, "ReportWorkers"):
            figures["all/w"] = asyncio.run(_one_report(path, None, warm=True))
    return figures


def run_tree(tree: Path, path: Path, now: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(path), "--now", repr(now)],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def export_revision(revision: str, into: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--baseline-rev", action="append", default=[])
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--now", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.now)))
        return 0
    root = Path(__file__).resolve().parent.parent
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-evaluation-") as tmp:
        path = Path(tmp) / "events.sqlite3"
        began = time.perf_counter()
        fill(path, args.visits, args.days, now)
        took = time.perf_counter() - began
        print(f"{args.visits} visits over {args.days} days written in {took:.1f} s")
        results = {"this tree": run_tree(root, path, now)}
        for revision in args.baseline_rev:
            tree = Path(tmp) / f"rev-{revision}"
            tree.mkdir()
            export_revision(revision, tree)
            results[revision] = run_tree(tree, path, now)
    header = ("code", "period", "visits", "seconds", "lag max ms", "lag p99 ms")
    print("{:<12} {:<6} {:>7} {:>8} {:>11} {:>11}".format(*header))
    for name, figures in results.items():
        for period, f in figures.items():
            print(
                f"{name:<12} {period:<6} {f['visits']:>7} {f['seconds']:>8.2f}"
                f" {f['lag_max_ms']:>11.1f} {f['lag_p99_ms']:>11.1f}"
            )
    mine = results["this tree"]
    for revision in args.baseline_rev:
        for period in ("week", "all"):
            a, b = mine[period], results[revision][period]
            print(
                f"{period}: time {a['seconds'] / b['seconds']:.2f}x, "
                f"max lag {a['lag_max_ms'] / max(b['lag_max_ms'], 0.001):.3f}x of {revision}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
