"""A durable local outbox: records the database could not take, kept on local disk until it can.

One JSON object per line in `outbox.jsonl`, appended and fsync'd before `append` returns, so a
record acknowledged from here survives a crash as surely as a committed row. To replay, the file
is renamed to `outbox.replaying.jsonl` (new records start a fresh `outbox.jsonl`), written to the
database in order, and deleted only once all of it was written: a crash or a failure half-way
replays the whole file again, which is why every record kind must be idempotent to write.

A line that does not parse (the torn tail of a write the crash interrupted, which was never
acknowledged) is skipped. The file lives in a folder of its own: put it on another filesystem
than an SQLite database, or a full disk takes both. It may hold a clinician's outcome note (free
text): like the SQLite file, it stays on the server's disk, readable by the server's user only.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar, TypeVarTuple

logger = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

OUTBOX_FILE: Final = "outbox.jsonl"
REPLAYING_FILE: Final = "outbox.replaying.jsonl"

Entry = dict[str, Any]


class FileOutbox:
    """The outbox file in `folder`. Every file operation runs on one worker thread of its own, in
    call order, so appends and the hand-over to replay never interleave. Call `open` first."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._pending = 0
        self._replaying = 0

    @property
    def pending(self) -> int:
        """Records in the outbox, not yet known to be in the database."""
        return self._pending

    async def _run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        self._pending = await self._run(self._open_sync)

    def _open_sync(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        return sum(len(_read(self.folder / name)) for name in (REPLAYING_FILE, OUTBOX_FILE))

    async def append(self, entry: Entry) -> None:
        """Durable when it returns; raises OSError (ENOSPC, EIO, ...) when it is not."""
        line = (json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n").encode()
        await self._run(self._append_sync, line)
        self._pending += 1

    def _append_sync(self, line: bytes) -> None:
        path = self.folder / OUTBOX_FILE
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            start = os.fstat(fd).st_size
            try:
                written = os.write(fd, line)
                if written != len(line):
                    # A regular file takes less than all only when its disk is full.
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
            except OSError:
                # Leave no torn line behind a record that was never acknowledged.
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.folder)

    async def take(self) -> list[Entry]:
        """The records to replay, oldest first: the file left by an unfinished replay, or else
        everything appended so far (appends from now on go to a fresh file)."""
        entries = await self._run(self._take_sync)
        self._replaying = len(entries)
        if not entries:
            # Nothing on disk (appends are serialised with this): nothing is pending either.
            self._pending = 0
        return entries

    def _take_sync(self) -> list[Entry]:
        replaying = self.folder / REPLAYING_FILE
        if not replaying.exists():
            current = self.folder / OUTBOX_FILE
            if not current.exists():
                return []
            current.rename(replaying)
            _fsync_dir(self.folder)
        return _read(replaying)

    async def taken(self) -> None:
        """Every record `take` returned is in the database: forget them."""
        await self._run(self._taken_sync)
        self._pending = max(0, self._pending - self._replaying)
        self._replaying = 0

    def _taken_sync(self) -> None:
        (self.folder / REPLAYING_FILE).unlink(missing_ok=True)
        _fsync_dir(self.folder)

    async def close(self) -> None:
        await self._run(lambda: None)  # let the last append finish
        self._executor.shutdown(wait=False)


def _read(path: Path) -> list[Entry]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    entries: list[Entry] = []
    skipped = 0
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            skipped += 1
    if skipped:
        logger.warning("outbox %s: skipped %d unreadable line(s)", path.name, skipped)
    return entries


def _fsync_dir(folder: Path) -> None:
    """Make a file's creation, rename or removal in `folder` itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
