"""The evaluation report over a large history, and the event loop's lag while it runs, in one run.

    python3 -m bench.evaluation_report [--visits 10000] [--days 30] [--repeat 3]
    python3 -m bench.evaluation_report --baseline-rev e87eeb8   # also the older code, same data
    python3 -m bench.evaluation_report --postgresql postgresql://postgres@127.0.0.1/postgres

One database is filled with N synthetic visits of one organisation spread over `--days` days
(each: booked, three people join, two quality samples each, they leave, the visit ends, an
outcome), written straight into the tables after the project's own migrations: a SQLite file,
or with `--postgresql` a scratch PostgreSQL database next to the given one (dropped after).
Then, for each code revision (this tree, and each `--baseline-rev` exported with `git archive`),
a fresh process opens the database through `rooms.sql.open_database` and builds the report of
the organisation the way `GET /api/evaluation/report` does (the worker process where the tree
has one, else `server.reports.gather` + `aggregate` on the loop), twice:

- `week`: the period of the last 7 days (what an evaluator usually asks for);
- `all`: the whole history (no period);
- `all/w` (trees with a report worker only): the whole history again, from a worker process
  that has served a report already (as a server's is after its first report): `week` and `all`
  include starting the worker.

Measured per report: wall time; CPU time (this process and its children, the worker included),
which other load on the machine disturbs less than wall time; and the event loop's lag
meanwhile: a probe task on the same loop sleeps 5 ms at a time and records how much later than
asked it woke (max and p99). A loop that the report blocks shows the whole report time as lag.
Figures depend on the machine; the ratio between two revisions measured in one run does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

ORG = "bench-org"
DAY = 86400.0
PROBE_SECONDS = 0.005
RATIOS = (("time", "seconds"), ("cpu", "cpu_seconds"), ("max lag", "lag_max_ms"))


Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


def synthetic_rows(visits: int, days: int, now: float, org: str = ORG) -> Rows:
    """The events (with their uids, as the server writes them), quality samples and outcomes of
    N synthetic visits of `org` over the last `days` days."""
    rng = random.Random(18)
    events: list[tuple[Any, ...]] = []
    quality: list[tuple[Any, ...]] = []
    outcomes: list[tuple[Any, ...]] = []
    roles = (("citizen", "citizen"), ("nurse", "municipality"), ("gp", "general-practice"))

    def event(*values: Any) -> None:
        *head, data = values
        events.append((*head, json.dumps(data), f"{rng.getrandbits(128):032x}"))

    for n in range(visits):
        visit = f"v{n:06d}"
        created = now - rng.uniform(0, days * DAY)
        start = created + 600
        event(created, visit, "visit-created", None, None, None, org, {"kind": "assisted"})
        t = start
        for i, (role, sector) in enumerate(roles):
            person = f"{visit}-p{i}"
            event(t, visit, "participant-invited", person, role, sector, org, {})
            t += rng.uniform(1, 60)
            event(t, visit, "participant-joined", person, role, sector, org, {})
            for k in range(2):
                bitrates = (rng.uniform(300, 1500), rng.uniform(300, 1500))
                measured = (40.0, 0.01, 0.01, 5.0, *bitrates, rng.uniform(10, 30))
                quality.append((t + 10 * (k + 1), visit, person, role, sector, "good", *measured))
        end = t + rng.uniform(300, 1800)
        for i, (role, sector) in enumerate(roles):
            event(end, visit, "participant-left", f"{visit}-p{i}", role, sector, org, {})
        event(end, visit, "visit-ended", None, None, None, org, {})
        outcomes.append((visit, "handled-remotely", end))
    return events, quality, outcomes


EVENT_COLUMNS = ("time", "visit", "kind", "participant", "role", "sector", "org", "data", "uid")
QUALITY_COLUMNS = (
    "time, visit, participant, role, sector, level, rtt_ms, loss_up, loss_down, jitter_ms,"
    " bitrate_up_kbps, bitrate_down_kbps, fps_up"
).split(", ")


async def _migrate(url: str | None, path: Path) -> None:
    from rooms.sql import open_database

    db = await open_database(url, path)
    await db.close()


def fill(path: Path, visits: int, days: int, now: float, org: str = ORG) -> None:
    """N synthetic visits of `org` over the last `days` days, straight into the SQLite file's
    tables (after the project's own migrations)."""
    asyncio.run(_migrate(None, path))
    events, quality, outcomes = synthetic_rows(visits, days, now, org)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            events,
        )
        conn.executemany(
            f"INSERT INTO quality ({', '.join(QUALITY_COLUMNS)})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            quality,
        )
        conn.executemany("INSERT INTO outcomes (visit, outcome, time) VALUES (?, ?, ?)", outcomes)
    conn.close()


async def fill_postgresql(url: str, visits: int, days: int, now: float, org: str = ORG) -> None:
    """The same visits into the (empty) PostgreSQL database at `url`, with COPY."""
    import asyncpg  # type: ignore[import-untyped]

    await _migrate(url, Path(os.devnull))
    events, quality, outcomes = synthetic_rows(visits, days, now, org)
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("events", records=events, columns=EVENT_COLUMNS)
        await conn.copy_records_to_table("quality", records=quality, columns=QUALITY_COLUMNS)
        await conn.copy_records_to_table(
            "outcomes", records=outcomes, columns=("visit", "outcome", "time")
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_postgresql(maintenance_url: str) -> AsyncIterator[str]:
    """A new, empty database next to `maintenance_url`'s, dropped afterwards."""
    import asyncpg

    name = f"bench_evaluation_{os.getpid()}"
    admin = await asyncpg.connect(maintenance_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield urlunsplit(urlsplit(maintenance_url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def _probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time()
        await asyncio.sleep(PROBE_SECONDS)
        lags.append(max(0.0, loop.time() - asked - PROBE_SECONDS))


def _cpu_seconds(me: psutil.Process) -> float:
    """CPU time of this process and of its live children (the report worker)."""
    total = 0.0
    for process in (me, *me.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def _one_report(
    url: str | None, path: Path, since: float | None, warm: bool = False
) -> dict[str, Any]:
    from rooms.evaluation import aggregate
    from rooms.eventlog import SqlEventLog
    from rooms.sql import open_database
    from server import reports

    me = psutil.Process()
    db = await open_database(url, path)
    try:
        events = SqlEventLog(db)
        workers_of = getattr(reports, "ReportWorkers", None)
        workers = workers_of(reports.Source(url, path)) if workers_of is not None else None
        if workers is not None and warm:  # a worker that has served a report already
            await workers.report(ORG, reports.Filters(since=time.time() + DAY))
        lags: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe(lags, stop))
        await asyncio.sleep(0.05)  # the probe is ticking
        lags.clear()
        cpu_before = _cpu_seconds(me)
        began = time.perf_counter()
        filters = reports.Filters(since=since)
        if workers is not None:  # newer trees: the server's worker process
            try:
                visits, _report = await workers.report(ORG, filters)
                seconds = time.perf_counter() - began
                cpu = _cpu_seconds(me) - cpu_before
            finally:
                await workers.close()
        else:  # older trees: gather on the loop, then aggregate
            summaries = await reports.gather(db, events, ORG, filters)
            visits = len(summaries)
            aggregate(summaries)
            seconds = time.perf_counter() - began
            cpu = _cpu_seconds(me) - cpu_before
        stop.set()
        await probe
    finally:
        await db.close()
    ordered = sorted(lags) or [0.0]
    return {
        "visits": visits,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "lag_max_ms": ordered[-1] * 1000,
        "lag_p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
    }


def measure(url: str | None, path: Path, now: float) -> dict[str, Any]:
    """Both reports in this process (whichever code PYTHONPATH gives)."""
    figures = {
        "week": asyncio.run(_one_report(url, path, now - 7 * DAY)),
        "all": asyncio.run(_one_report(url, path, None)),
    }
    if importlib.util.find_spec("server.reports") is not None:
        from server import reports

        if hasattr(reports, "ReportWorkers"):
            figures["all/w"] = asyncio.run(_one_report(url, path, None, warm=True))
    return figures


def run_tree(tree: Path, url: str | None, path: Path, now: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, __file__, "--measure", str(path), "--now", repr(now)]
    if url:
        command += ["--database-url", url]
    out = subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def export_revision(revision: str, into: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def compare(args: argparse.Namespace, url: str | None, path: Path, tmp: Path, now: float) -> None:
    """Each tree's figures over the same data, run after run, then the ratios to each baseline
    (of the runs' medians)."""
    root = Path(__file__).resolve().parent.parent
    runs: list[dict[str, dict[str, Any]]] = []
    for _ in range(args.repeat):
        figures = {"this tree": run_tree(root, url, path, now)}
        for revision in args.baseline_rev:
            tree = tmp / f"rev-{revision}"
            if not tree.exists():
                tree.mkdir()
                export_revision(revision, tree)
            figures[revision] = run_tree(tree, url, path, now)
        runs.append(figures)
    print(f"database: {'postgresql' if url else 'sqlite'}; {args.repeat} run(s)")
    header = ("run", "code", "period", "visits", "seconds", "cpu s", "lag max ms", "lag p99 ms")
    print("{:<3} {:<12} {:<6} {:>7} {:>8} {:>6} {:>11} {:>11}".format(*header))
    for number, figures in enumerate(runs, 1):
        for name, by_period in figures.items():
            for period, f in by_period.items():
                print(
                    f"{number:<3} {name:<12} {period:<6} {f['visits']:>7} {f['seconds']:>8.2f}"
                    f" {f['cpu_seconds']:>6.2f} {f['lag_max_ms']:>11.1f} {f['lag_p99_ms']:>11.1f}"
                )

    def median(name: str, period: str, key: str) -> float:
        return statistics.median(r[name][period][key] for r in runs)

    for revision in args.baseline_rev:
        for period in ("week", "all"):
            ratios = []
            for label, key in (
                ("time", "seconds"),
                ("cpu", "cpu_seconds"),
                ("max lag", "lag_max_ms"),
            ):
                ratio = median("this tree", period, key) / max(median(revision, period, key), 1e-6)
                ratios.append(f"{label} {ratio:.2f}x")
            print(f"{period}: {', '.join(ratios)} of {revision} (medians)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--baseline-rev", action="append", default=[])
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="a PostgreSQL maintenance URL: the visits go to a scratch database next to it",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs; each figure's best is kept")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--now", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.database_url, Path(args.measure), args.now)))
        return 0
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-evaluation-") as tmp:
        path = Path(tmp) / "events.sqlite3"
        began = time.perf_counter()
        if args.postgresql:

            async def run() -> None:
                async with scratch_postgresql(args.postgresql) as url:
                    await fill_postgresql(url, args.visits, args.days, now)
                    took = time.perf_counter() - began
                    print(f"{args.visits} visits over {args.days} days written in {took:.1f} s")
                    await asyncio.to_thread(compare, args, url, path, Path(tmp), now)

            asyncio.run(run())
        else:
            fill(path, args.visits, args.days, now)
            took = time.perf_counter() - began
            print(f"{args.visits} visits over {args.days} days written in {took:.1f} s")
            compare(args, None, path, Path(tmp), now)
    return 0


if __name__ == "__main__":
    sys.exit(main())
