"""The data folder and every file in it that holds data or keys are the service user's alone.

A real server process started under a permissive umask writes its database (with its WAL and
shared-memory files), its signing key and its pseudonym key; none of them may be readable by
another local user. A data folder left readable by an older version is tightened on start.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.support.servers import RunningServer, cli, free_port

DATA_FILES = (
    "metadata.sqlite3",
    "metadata.sqlite3-wal",
    "metadata.sqlite3-shm",
    "signing-key.pem",
    "evaluation-key",
)


async def _serve_with_umask(tmp: Path, umask: int) -> RunningServer:
    """`screenvisit serve` in its own process, started with `umask`."""
    port = free_port()
    server = RunningServer(None, port, tmp / "data", tmp / "decode.json", tmp / "server.log")  # type: ignore[arg-type]
    handle = await asyncio.to_thread(server.log.open, "wb")
    server.process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--no-demo",
        env=server.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=handle,
        preexec_fn=lambda: os.umask(umask),
    )
    handle.close()
    assert server.process.stdout is not None
    line = await asyncio.wait_for(server.process.stdout.readline(), timeout=30)
    if b"listening on" not in line:
        await server.stop()
        raise RuntimeError(f"server did not start: {line!r}\n{server.log.read_text()}")
    return server


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(data_dir: Path) -> dict[str, str]:
    out = {".": oct(_mode(data_dir))}
    for name in DATA_FILES:
        path = data_dir / name
        out[name] = oct(_mode(path)) if path.exists() else "missing"
    return out


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_data_folder_and_files_are_private_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    server = await _serve_with_umask(tmp_path, umask)
    try:
        # A booking writes rows (and the audit log): the WAL and its index exist now.
        code, _out, err = await cli(server, "visit", "create", "--json")
        assert code == 0, err
        modes = _modes(server.data_dir)
    finally:
        await server.stop()
    expected = {".": oct(0o700)} | {name: oct(0o600) for name in DATA_FILES}
    assert modes == expected


async def test_files_left_readable_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    server = await _serve_with_umask(tmp_path, 0o022)
    code, _out, err = await cli(server, "visit", "create", "--json")
    assert code == 0, err
    await server.stop()
    data_dir = server.data_dir
    data_dir.chmod(0o755)
    for path in data_dir.iterdir():
        path.chmod(0o644)
    # A rollback journal left behind by a crash, from before the database used WAL.
    (data_dir / "metadata.sqlite3-journal").write_bytes(b"")
    (data_dir / "metadata.sqlite3-journal").chmod(0o644)

    server = await _serve_with_umask(tmp_path, 0o022)
    try:
        modes = _modes(data_dir)
        journal = data_dir / "metadata.sqlite3-journal"
        journal_mode = oct(_mode(journal)) if journal.exists() else "removed"
    finally:
        await server.stop()
    assert modes["."] == oct(0o700)
    for name in ("metadata.sqlite3", "signing-key.pem", "evaluation-key"):
        assert modes[name] == oct(0o600), (name, modes)
    assert journal_mode in (oct(0o600), "removed")
