"""The local outbox file: durable appends, a torn tail skipped, hand-over to replay."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from rooms.outbox import OUTBOX_FILE, REPLAYING_FILE, FileOutbox
from tests.faults.test_database_outage import fill, tiny_tmpfs


async def test_appended_records_are_taken_in_order_and_forgotten_once_written(
    tmp_path: Path,
) -> None:
    outbox = FileOutbox(tmp_path / "outbox")
    await outbox.open()
    for n in range(3):
        await outbox.append({"kind": "event", "record": {"n": n}})
    assert outbox.pending == 3
    taken = await outbox.take()
    await outbox.append({"kind": "event", "record": {"n": 3}})  # while the replay runs
    assert [e["record"]["n"] for e in taken] == [0, 1, 2]
    await outbox.taken()
    assert outbox.pending == 1
    assert [e["record"]["n"] for e in await outbox.take()] == [3]
    await outbox.taken()
    assert outbox.pending == 0
    assert await outbox.take() == []
    await outbox.close()


async def test_a_reopened_outbox_counts_what_it_holds_and_skips_a_torn_tail(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "outbox"
    outbox = FileOutbox(folder)
    await outbox.open()
    await outbox.append({"kind": "event", "record": {"n": 0}})
    await outbox.take()  # a replay that never finished: the file stays to be replayed
    await outbox.append({"kind": "event", "record": {"n": 1}})
    await outbox.close()
    with (folder / OUTBOX_FILE).open("ab") as torn:
        torn.write(b'{"kind": "event", "rec')  # a crash mid-write, never acknowledged

    again = FileOutbox(folder)
    await again.open()
    assert again.pending == 2
    assert [e["record"]["n"] for e in await again.take()] == [0]
    await again.taken()
    assert not (folder / REPLAYING_FILE).exists()
    assert [e["record"]["n"] for e in await again.take()] == [1]
    await again.taken()
    assert again.pending == 0
    await again.close()


async def test_an_append_the_disk_cannot_take_fails_and_leaves_no_torn_line(
    tmp_path: Path,
) -> None:
    with tiny_tmpfs(tmp_path / "small", "64k") as small:
        outbox = FileOutbox(small / "outbox")
        await outbox.open()
        await outbox.append({"kind": "event", "record": {"n": 0}})
        filler = await asyncio.to_thread(fill, small)
        with pytest.raises(OSError) as refused:
            await outbox.append({"kind": "event", "record": {"big": "x" * 20_000}})
        assert refused.value.errno == errno.ENOSPC
        assert outbox.pending == 1
        filler.unlink()
        await outbox.append({"kind": "event", "record": {"n": 1}})
        assert [e["record"] for e in await outbox.take()] == [{"n": 0}, {"n": 1}]
        await outbox.close()
