"""Evaluation data for evaluators: summaries of their organisation's visits, the aggregated
report, and exports (CSV, JSON, FHIR R4), all pseudonymous. One path for the API, the report
page and `screenvisit report export`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

from rooms.evaluation import Report, VisitSummary, aggregate, filter_summaries
from rooms.eventlog import EventLog, SqlEventLog
from rooms.exports import (
    Pseudonymizer,
    Records,
    fhir_json,
    participants_csv,
    read_records,
    summarize_records,
    visits_csv,
    visits_json,
)
from rooms.private_files import private_dir, private_file
from rooms.quality_log import OutcomeStore, SqlQualityLog, SurveyStore
from rooms.sql import Database, open_database

T = TypeVar("T")

#: format -> (render, content type, file name)
EXPORTS: dict[str, tuple[Callable[[Sequence[VisitSummary], Pseudonymizer], str], str, str]] = {
    "csv": (visits_csv, "text/csv", "screenvisit-visits.csv"),
    "participants-csv": (participants_csv, "text/csv", "screenvisit-participants.csv"),
    "json": (visits_json, "application/json", "screenvisit-visits.json"),
    "fhir": (fhir_json, "application/fhir+json", "screenvisit-fhir-bundle.json"),
}


def load_pseudonymizer(data_dir: Path) -> Pseudonymizer:
    """The deployment's pseudonym key, created on first use. Blocking: call from a thread.

    Exports made with the same key join across formats and over time; a new key (a new data
    folder) makes new pseudonyms."""
    path = data_dir / "evaluation-key"
    private_dir(data_dir)
    private_file(path)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return Pseudonymizer(path.read_bytes())


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    until: float | None = None
    kind: str | None = None
    sector: str | None = None


#: Visits read and summarized per step: bounds the memory a long history takes, and paces a
#: progress bar.
BATCH = 1000


async def gather(
    db: Database,
    events: EventLog,
    org: str,
    filters: Filters,
    progress: Callable[[int, int], None] | None = None,
    *,
    samples: bool = True,
) -> list[VisitSummary]:
    """Summaries of `org`'s visits that pass `filters`; `progress(done, total)` after each batch.
    Without `samples` (what the report needs), quality samples are read as their facts only
    and the summaries' `quality` is empty.

    The period narrows the visits in SQL (`visits_in_period`); the reading is async I/O on the
    loop, the summarizing (CPU, milliseconds per visit) runs in a worker thread, so a report over
    a long history never stalls the calls this server carries."""
    visits = await events.visits_in_period(org, filters.since, filters.until)
    summaries: list[VisitSummary] = []
    for start in range(0, len(visits), BATCH):
        batch = visits[start : start + BATCH]
        records = await read_records(
            batch, events, SqlQualityLog(db), OutcomeStore(db), SurveyStore(db), samples=samples
        )

        def summarize_and_filter(records: Records = records) -> list[VisitSummary]:
            return filter_summaries(
                summarize_records(records),
                filters.since,
                filters.until,
                filters.kind,
                filters.sector,
                org,
            )

        summaries += await asyncio.to_thread(summarize_and_filter)
        if progress is not None:
            progress(start + len(batch), len(visits))
    return summaries


async def report(db: Database, events: EventLog, org: str, filters: Filters) -> tuple[int, Report]:
    """The number of visits that pass `filters`, and their aggregated report."""
    summaries = await gather(db, events, org, filters, samples=False)
    return len(summaries), await asyncio.to_thread(aggregate, summaries)


async def render_export(
    fmt: str, summaries: Sequence[VisitSummary], pseudonyms: Pseudonymizer
) -> str:
    """One of `EXPORTS`, rendered in a worker thread."""
    render = EXPORTS[fmt][0]
    return await asyncio.to_thread(render, summaries, pseudonyms)


# --- in a worker process ----------------------------------------------------------------------
#
# A thread keeps the loop turning, but it shares the GIL and the garbage collector with the loop:
# summarizing 10,000 visits allocates millions of objects, and a full collection of them stalls
# every call on the server for hundreds of milliseconds. So a server builds reports and exports
# in a worker process (`ReportWorkers`) that opens the database itself: the server's loop only
# waits for a small result.


@dataclass(frozen=True)
class Source:
    """Where a worker process finds the evaluation data: the server's database settings."""

    database_url: str | None
    database_path: Path


async def _summaries_from(
    source: Source, org: str, filters: Filters, samples: bool
) -> list[VisitSummary]:
    db = await open_database(source.database_url, source.database_path)
    try:
        return await gather(db, SqlEventLog(db), org, filters, samples=samples)
    finally:
        await db.close()


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """A job allocates millions of objects and frees them by reference counting (they hold no
    cycles); the cyclic collector would walk them all again and again meanwhile, about a third
    of the job's time. The worker process runs nothing else."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def report_job(source: Source, org: str, filters: Filters) -> tuple[int, Report]:
    """The report, built in the worker process that runs this."""
    with _without_cyclic_gc():
        summaries = asyncio.run(_summaries_from(source, org, filters, samples=False))
        return len(summaries), aggregate(summaries)


def export_job(
    source: Source, org: str, filters: Filters, fmt: str, pseudonyms: Pseudonymizer
) -> str:
    """An export, rendered in the worker process that runs this."""
    with _without_cyclic_gc():
        summaries = asyncio.run(_summaries_from(source, org, filters, samples=True))
        return EXPORTS[fmt][0](summaries, pseudonyms)


class ReportUnavailable(Exception):
    """The worker process stopped before it answered."""


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """A process spawned meanwhile does not run this process's main module again.

    A spawned child imports the parent's main module first (multiprocessing's `prepare`); for
    a server that is `server.cli`, so the whole media stack, about 1.7 s of CPU before the first
    report. The jobs need none of it: they are functions of this module, pickled by name."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class ReportWorkers:
    """One worker process (started on first use, spawned clean) that builds reports and exports
    one after another; owned by the app, which shuts it down."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        return self._pool

    async def _run(self, job: Callable[..., T], *args: object) -> T:
        pool = self._executor()
        try:
            # The pool starts its process (when it has none) within this call, not later.
            with _main_module_hidden():
                running = asyncio.get_running_loop().run_in_executor(pool, job, *args)
            return await running
        except BrokenProcessPool:
            # The worker died (killed, out of memory): the next report gets a new one.
            if self._pool is pool:
                self._pool = None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            raise ReportUnavailable("the report worker stopped; try again") from None

    async def report(self, org: str, filters: Filters) -> tuple[int, Report]:
        return await self._run(report_job, self._source, org, filters)

    async def export(self, org: str, filters: Filters, fmt: str, pseudonyms: Pseudonymizer) -> str:
        return await self._run(export_job, self._source, org, filters, fmt, pseudonyms)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
